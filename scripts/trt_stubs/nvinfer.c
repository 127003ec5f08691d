/* Stand-in for libnvinfer.so.N: the entry points TensorRT's Python bindings link against, each returning null.
 * With it, `import tensorrt` works on a machine without TensorRT and trt.Builder(logger) raises, so the real
 * bindings' classes, enums and signatures can be checked without a GPU. Never used to run anything. */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version)
{
    (void)engine; (void)logger; (void)version;
    return NULL;
}
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int capability) { (void)capability; return NULL; }
