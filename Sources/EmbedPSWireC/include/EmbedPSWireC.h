// Umbrella header of the generated protobuf-c messages (see Protos/generate.sh).
#include "../generated/embedps.pb-c.h"
#include "../generated/health.pb-c.h"
