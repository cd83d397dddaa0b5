// The tools' --device choice: the CPU reference backend or, in a CUDA build, the CUDA backend.
// Not a backend itself.
#include <string>

#include "sharq/engine/cuda_backend.h"
#include "sharq/error.h"

namespace sharq::engine {

#ifndef SHARQ_HAVE_CUDA
bool cuda_backend_built() {
  return false;
}
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw Error(
      "this sharq was built without CUDA (configure with -DSHARQ_CUDA=ON on a machine "
      "with the CUDA toolkit)");
}
#endif

std::unique_ptr<Backend> make_backend(std::string_view device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
  if (device == "cuda") return make_cuda_backend(0);
  if (device.substr(0, 5) == "cuda:") {
    const std::string idx(device.substr(5));
    if (!idx.empty() && idx.size() < 4 &&
        idx.find_first_not_of("0123456789") == std::string::npos) {
      return make_cuda_backend(std::stoi(idx));
    }
  }
  throw Error("unknown device '" + std::string(device) + "' (expected cpu, cuda or cuda:N)");
}

}  // namespace sharq::engine
