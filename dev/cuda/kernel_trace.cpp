// A kernel timeline for any CUDA program, graph replays included: LD_PRELOAD this library and
// every kernel's start and end (GPU timestamps, ns) go to $KTRACE_OUT as CSV, through CUPTI's
// concurrent-kernel activity records (which do not serialize kernels, so programmatic dependent
// launch still overlaps them as it does untraced). Built by `TRACE=1 scripts/pack_device.sh`
// (g++ -shared -fPIC -O2 kernel_trace.cpp -I$CUDA/include -L$CUDA/lib -lcupti -o libktrace.so),
// used by `bench/e2e/device_run.sh trace`.
// Why: the decode step's per-op costs had only been measured by skipping ops (session 10); a
// timeline shows which kernel's end each next kernel waits on, i.e. the critical path.
#include <cupti.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

std::FILE* g_out = nullptr;
std::mutex g_mu;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = 8u << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
        rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    if (g_out) {
      std::fprintf(g_out, "%llu,%llu,%u,%u,%d,%d,%u,%s\n",
                   static_cast<unsigned long long>(k->start),
                   static_cast<unsigned long long>(k->end), k->graphId, k->streamId, k->gridX,
                   k->blockX, k->correlationId, k->name ? k->name : "?");
    }
  }
  std::free(buffer);
}

__attribute__((constructor)) void trace_start() {
  const char* path = std::getenv("KTRACE_OUT");
  g_out = std::fopen(path ? path : "ktrace.csv", "w");
  if (!g_out) return;
  std::fprintf(g_out, "start_ns,end_ns,graph,stream,grid,block,corr,name\n");
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI activity tracing unavailable\n");
  }
}

__attribute__((destructor)) void trace_stop() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_out) std::fclose(g_out);
  g_out = nullptr;
}

}  // namespace
