// Models with random weights in the shape of a real config, for benchmarks where no checkpoint can
// be downloaded (the device machine): the architecture, sizes and RoPE settings are the real
// model's, the weights are seeded Gaussians (std 0.02, norms 1). Not for accuracy work.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sharq/model/loaded_model.h"

namespace sharq::model {

// The presets' names ("llama-3.1-8b", "llama-tiny", ...).
std::vector<std::string> synthetic_presets();
// Config of a preset; throws sharq::Error listing the presets for an unknown name.
ModelConfig synthetic_config(std::string_view preset);
// Every tensor the config's decoder needs, filled deterministically from `seed` (any thread
// count gives the same values). layers > 0 overrides the preset's layer count.
LoadedModel synthetic_model(std::string_view preset, uint64_t seed, int threads,
                            int64_t layers = 0);

}  // namespace sharq::model
