// The eval tool's report: per-mode accuracy and per-layer errors, written as report.json,
// report.md and PNG plots (gnuplot). Not the measurement itself (metrics.h, layer_stats.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sharq/eval/layer_stats.h"
#include "sharq/modes.h"

namespace sharq::eval {

struct ModeResult {
  std::string mode;  // a Mode name, or a variant name ("sharq-nvfp4+res-g32")
  double perplexity = 0.0;
  int64_t tokens = 0;
  double kl_mean = 0.0;  // vs bf16
  double kl_p99 = 0.0;
  double top1 = 0.0;  // top-1 agreement with bf16
  double gap_recovery = 0.0;
  bool has_gap = false;  // gap_recovery defined (SharQ family vs its baseline)
  std::string baseline;  // the baseline of gap_recovery
  double seconds = 0.0;
};

struct EvalReport {
  std::string model;
  std::string text;
  std::string command;
  std::string date;
  int64_t ctx = 0;
  int64_t tokens = 0;
  std::vector<ModeResult> modes;
  std::vector<LayerStats> layers;
};

// Returns the baseline a mode's gap recovery is measured against ("" when none):
// nvfp4 for the NVFP4 SharQ modes and ablations, mxfp4 / hif4 for their SharQ modes.
std::string gap_baseline(const std::string& mode);
// Fills gap_recovery / has_gap / baseline of every mode from the perplexities in the report.
void compute_gap_recovery(EvalReport& r);

// Writes DIR/report.json, DIR/report.md, DIR/perplexity_by_mode.png and
// DIR/layer_output_error.png (plots need gnuplot; without it the .md says so and the
// .dat/.gp files are left for the user). Creates DIR. Throws sharq::Error on I/O failure.
void write_report(const EvalReport& r, const std::string& dir);

}  // namespace sharq::eval
