// report.json (nlohmann-json), report.md, and gnuplot-rendered PNG plots for the eval tool.
#include "sharq/eval/report.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sharq/error.h"
#include "sharq/eval/metrics.h"

namespace sharq::eval {
namespace {

std::ofstream open_out(const std::string& path) {
  std::ofstream f(path);
  if (!f) throw Error("cannot write '" + path + "'");
  return f;
}

std::string fmt(double v, const char* f = "%.4f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

nlohmann::json to_json(const EvalReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["text"] = r.text;
  j["command"] = r.command;
  j["date"] = r.date;
  j["ctx"] = r.ctx;
  j["tokens"] = r.tokens;
  for (const auto& m : r.modes) {
    nlohmann::json e = {{"mode", m.mode},       {"perplexity", m.perplexity}, {"tokens", m.tokens},
                        {"kl_mean", m.kl_mean}, {"kl_p99", m.kl_p99},         {"top1", m.top1},
                        {"seconds", m.seconds}};
    if (m.has_gap) {
      e["gap_recovery"] = m.gap_recovery;
      e["gap_baseline"] = m.baseline;
    }
    j["modes"].push_back(e);
  }
  for (const auto& l : r.layers) {
    nlohmann::json e = {{"layer", l.layer},
                        {"tokens", l.tokens},
                        {"k", l.k},
                        {"n", l.n},
                        {"max_over_rms", l.max_over_rms},
                        {"energy_4of8p", l.energy_4of8p},
                        {"energy_2of4", l.energy_2of4},
                        {"merged_lo_elements", l.merged_lo_elements},
                        {"merged_lo_windows", l.merged_lo_windows},
                        {"merged_lo_cols", l.merged_lo_cols},
                        {"merged_lo_tile_cols", l.merged_lo_tile_cols},
                        {"merged_lo_max_row", l.merged_lo_max_row}};
    for (const auto& m : l.modes) {
      e["modes"][std::string(mode_name(m.mode))] = {{"act_err", m.act_err}, {"out_err", m.out_err}};
    }
    j["layers"].push_back(e);
  }
  return j;
}

void write_markdown(const EvalReport& r, const std::string& path, bool plots) {
  auto f = open_out(path);
  f << "# sharq eval report\n\n";
  f << "- model: `" << r.model << "`\n- text: `" << r.text << "`\n- tokens: " << r.tokens
    << " (windows of " << r.ctx << ")\n- date: " << r.date << "\n- command: `" << r.command
    << "`\n\n";
  f << "## Per mode\n\n| mode | perplexity | KL mean | KL p99 | top-1 vs bf16 | gap recovered |"
       " seconds |\n|---|---|---|---|---|---|---|\n";
  for (const auto& m : r.modes) {
    f << "| " << m.mode << " | " << fmt(m.perplexity) << " | " << fmt(m.kl_mean, "%.5f") << " | "
      << fmt(m.kl_p99, "%.4f") << " | " << fmt(m.top1 * 100, "%.2f%%") << " | "
      << (m.has_gap ? fmt(m.gap_recovery * 100, "%.1f%%") + " of " + m.baseline : "-") << " | "
      << fmt(m.seconds, "%.1f") << " |\n";
  }
  f << "\nGap recovered = (ppl_baseline - ppl_mode) / (ppl_baseline - ppl_bf16).\n";
  if (!r.layers.empty()) {
    f << "\n## Per linear layer (output error vs bf16 on the same input)\n\n| layer | max/RMS | "
         "4:8p energy | 2:4 energy | merged lo: elements / 8x128 windows / columns / columns "
         "per 128 rows / max a row |";
    for (const auto& m : r.layers.front().modes) f << " " << mode_name(m.mode) << " |";
    f << "\n|---|---|---|---|---|";
    for (size_t i = 0; i < r.layers.front().modes.size(); ++i) f << "---|";
    f << "\n";
    for (const auto& l : r.layers) {
      f << "| " << l.layer << " | " << fmt(l.max_over_rms, "%.1f") << " | "
        << fmt(l.energy_4of8p, "%.3f") << " | " << fmt(l.energy_2of4, "%.3f") << " | "
        << fmt(l.merged_lo_elements * 100, "%.3f%%") << " / "
        << fmt(l.merged_lo_windows * 100, "%.1f%%") << " / "
        << fmt(l.merged_lo_cols * 100, "%.1f%%") << " / "
        << fmt(l.merged_lo_tile_cols * 100, "%.1f%%") << " / " << l.merged_lo_max_row << " |";
      for (const auto& m : l.modes) f << " " << fmt(m.out_err, "%.4f") << " |";
      f << "\n";
    }
  }
  f << "\n## Plots\n\n";
  if (plots) {
    f << "![perplexity by mode](perplexity_by_mode.png)\n\n![per-layer output "
         "error](layer_output_error.png)\n";
  } else {
    f << "gnuplot was not found: the plot data and scripts are in this folder (*.dat, *.gp).\n";
  }
}

// Writes the gnuplot data and scripts; returns true if the PNGs were rendered.
bool write_plots(const EvalReport& r, const std::string& dir) {
  {
    auto d = open_out(dir + "/perplexity_by_mode.dat");
    for (size_t i = 0; i < r.modes.size(); ++i) {
      d << i << " \"" << r.modes[i].mode << "\" " << r.modes[i].perplexity << "\n";
    }
    auto g = open_out(dir + "/perplexity_by_mode.gp");
    // Log axis: the sparse-only ablation is 10-100x worse than the rest.
    g << "set terminal pngcairo size 1200,600\nset output 'perplexity_by_mode.png'\n"
         "set title 'Perplexity by mode (log scale)'\nset style fill solid 0.6\nset boxwidth 0.7\n"
         "set xtics rotate by -40\nset bmargin 10\nset rmargin 16\nset logscale y\n"
         "set ylabel 'perplexity'\nset grid ytics\n"
         "plot 'perplexity_by_mode.dat' using 1:3:xtic(2) with boxes notitle\n";
  }
  if (!r.layers.empty()) {
    auto d = open_out(dir + "/layer_output_error.dat");
    d << "# layer";
    for (const auto& m : r.layers.front().modes) d << " \"" << mode_name(m.mode) << "\"";
    d << "\n";
    for (size_t i = 0; i < r.layers.size(); ++i) {
      d << i;
      for (const auto& m : r.layers[i].modes) d << " " << m.out_err;
      d << "\n";
    }
    auto g = open_out(dir + "/layer_output_error.gp");
    g << "set terminal pngcairo size 1200,600\nset output 'layer_output_error.png'\n"
         "set title 'Per-layer output error vs bf16 (same inputs)'\nset xlabel 'linear layer "
         "(q,k,v,o,gate,up,down per block)'\nset ylabel 'relative Frobenius error'\n"
         "set logscale y\nset key outside right\nset grid\n";
    g << "plot ";
    const size_t nm = r.layers.front().modes.size();
    bool first = true;
    for (size_t c = 0; c < nm; ++c) {
      // A mode with zero error everywhere (bf16, the reference) has no place on a log axis.
      bool any = false;
      for (const auto& l : r.layers) any |= l.modes[c].out_err > 0.0;
      if (!any) continue;
      g << (first ? "" : ", ") << "'layer_output_error.dat' using 1:" << c + 2
        << " with linespoints title '" << mode_name(r.layers.front().modes[c].mode) << "'";
      first = false;
    }
    g << "\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
  bool ok = std::system(("cd '" + dir + "' && gnuplot perplexity_by_mode.gp").c_str()) == 0;
  if (!r.layers.empty()) {
    ok &= std::system(("cd '" + dir + "' && gnuplot layer_output_error.gp").c_str()) == 0;
  }
  return ok;
}

}  // namespace

std::string gap_baseline(const std::string& mode) {
  static const std::map<std::string, std::string> kBase = {
      {"sharq-nvfp4", "nvfp4"}, {"sharq-nvfp4-24", "nvfp4"}, {"sparse-only", "nvfp4"},
      {"dense+dense", "nvfp4"}, {"sparse+sparse", "nvfp4"},  {"sharq-mxfp4", "mxfp4"},
      {"sharq-hif4", "hif4"},   {"sharq-nvfp4-pt", "nvfp4"}};
  // Experiment variants are named "<mode>+<variant>" and share their mode's baseline.
  const std::string base_mode = mode.rfind("sharq", 0) == 0 ? mode.substr(0, mode.find('+')) : mode;
  const auto it = kBase.find(base_mode);
  return it == kBase.end() ? "" : it->second;
}

void compute_gap_recovery(EvalReport& r) {
  std::map<std::string, double> ppl;
  for (const auto& m : r.modes) ppl[m.mode] = m.perplexity;
  if (!ppl.count("bf16")) return;
  for (auto& m : r.modes) {
    const std::string base = gap_baseline(m.mode);
    if (base.empty() || !ppl.count(base)) continue;
    m.baseline = base;
    m.has_gap = true;
    m.gap_recovery = gap_recovery(m.perplexity, ppl[base], ppl["bf16"]);
  }
}

void write_report(const EvalReport& r, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create report folder '" + dir + "': " + ec.message());
  open_out(dir + "/report.json") << to_json(r).dump(2) << "\n";
  const bool plots = write_plots(r, dir);
  write_markdown(r, dir + "/report.md", plots);
}

}  // namespace sharq::eval
