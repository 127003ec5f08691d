/* Stand-in for libnvinfer_plugin.so.N (see nvinfer.c): plugin initialisation reports failure. */
#include <stdbool.h>

bool initLibNvInferPlugins(void *logger, char const *plugin_namespace)
{
    (void)logger; (void)plugin_namespace;
    return false;
}
