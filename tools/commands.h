// Registration hooks of the CLI subcommands; each cmd_*.cpp adds one subcommand to the app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sharq::tools {

// Each returns the action to run when its subcommand was chosen.
using Action = std::function<int()>;
Action register_quantize(CLI::App& app);
Action register_demo(CLI::App& app);

}  // namespace sharq::tools
