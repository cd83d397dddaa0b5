// `sharq` entry point: parses the subcommand and turns every error into one line + exit 1.
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

#include "commands.h"
#include "sharq/error.h"

int main(int argc, char** argv) {
  CLI::App app{"sharq: FP4 LLM inference with SharQ (sparse FP4 backbone + dense FP4 residual)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sharq 0.1.0");
  std::vector<std::pair<CLI::App*, sharq::tools::Action>> actions;
  auto add = [&](sharq::tools::Action a) {
    actions.emplace_back(app.get_subcommands({}).back(), std::move(a));
  };
  add(sharq::tools::register_quantize(app));
  add(sharq::tools::register_demo(app));
#ifdef SHARQ_ENGINE_TOOLS
  add(sharq::tools::register_generate(app));
  add(sharq::tools::register_perplexity(app));
  add(sharq::tools::register_inspect(app));
  add(sharq::tools::register_logits(app));
  add(sharq::tools::register_eval(app));
  add(sharq::tools::register_bench(app));
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, action] : actions) {
      if (sub->parsed()) return action();
    }
  } catch (const sharq::Error& e) {
    std::fprintf(stderr, "sharq: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sharq: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
