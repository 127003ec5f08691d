/* Stand-in for libnvonnxparser.so.N (see nvinfer.c): no parser can be created. */
#include <stddef.h>

void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version)
{
    (void)network; (void)logger; (void)version;
    return NULL;
}
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version)
{
    (void)refitter; (void)logger; (void)version;
    return NULL;
}
int getNvOnnxParserVersion(void) { return 0; }
