// rnnbench's compiled kernels: one Python module, one source file per cell family (kernels.h).
#include <torch/extension.h>

#include <mutex>
#include <set>
#include <thread>

#include "gemm.h"
#include "kernels.h"
#include "rows.h"

namespace {

// the distinct threads that ran for_batch's chunks: tests check the batch split really runs in parallel
// (without -fopenmp the OpenMP pragma under at::parallel_for is dropped and every chunk runs serially)
int64_t batch_threads(int64_t B) {
  std::mutex m;
  std::set<std::thread::id> ids;
  for_batch(B, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  return static_cast<int64_t>(ids.size());
}

// the kernels' GEMM engine for this process: "onednn" (float32 GEMMs through oneDNN, where this
// torch exports it), "blas", or "auto" (blas on an Intel CPU, else onednn: gemm.h); returns the
// engine in use
std::string set_gemm(const std::string& engine) {
  TORCH_CHECK(engine == "auto" || engine == "onednn" || engine == "blas",
              "set_gemm: engine is 'auto', 'onednn' or 'blas', not '", engine, "'");
  const bool onednn = engine == "onednn" || (engine == "auto" && !gemm::intel_cpu());
  gemm::onednn_on() = onednn && gemm::onednn_symbol() != nullptr;
  return gemm::onednn_on() ? "onednn" : "blas";
}

std::string gemm_engine() { return gemm::onednn_on() ? "onednn" : "blas"; }

Tensor gemm_mm(const Tensor& a, const Tensor& b) { return gemm::mm(a, b); }

void gemm_mm_out(const Tensor& out, const Tensor& a, const Tensor& b) { gemm::mm_out(out, a, b); }

void gemm_addmm_out(const Tensor& out, const Tensor& c, const Tensor& a, const Tensor& b) {
  gemm::addmm_out(out, c, a, b);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward", &lstm_forward, "LSTM whole-sequence forward (gate order o, i, f, g)");
  m.def("lstm_backward", &lstm_backward, "LSTM whole-sequence BPTT");
  m.def("gru_forward", &gru_forward, "GRU whole-sequence forward (gate order r, z, n)");
  m.def("gru_backward", &gru_backward, "GRU whole-sequence BPTT");
  m.def("rnn_forward", &rnn_forward, "tanh RNN whole-sequence forward");
  m.def("rnn_backward", &rnn_backward, "tanh RNN whole-sequence BPTT");
  m.def("mlstm_forward", &mlstm_forward, "mLSTM whole-sequence forward");
  m.def("mlstm_backward", &mlstm_backward, "mLSTM whole-sequence BPTT");
  m.def("mrnn_forward", &mrnn_forward, "mRNN whole-sequence forward");
  m.def("mrnn_backward", &mrnn_backward, "mRNN whole-sequence BPTT");
  m.def("vclstm_forward", &vclstm_forward, "VC-LSTM whole-sequence forward loop (fills the wrapper's buffers)");
  m.def("vclstm_backward", &vclstm_backward, "VC-LSTM BPTT loop");
  m.def("vcgru_forward", &vcgru_forward, "VC-GRU whole-sequence forward loop (fills the wrapper's buffers)");
  m.def("vcgru_backward", &vcgru_backward, "VC-GRU BPTT loop");
  m.def("delta_rnn_forward", &delta_rnn_forward, "Delta-RNN whole-sequence forward");
  m.def("delta_rnn_backward", &delta_rnn_backward, "Delta-RNN whole-sequence BPTT");
  m.def("vcrnn_forward", &vcrnn_forward, "VC-RNN whole-sequence forward");
  m.def("vcrnn_backward", &vcrnn_backward, "VC-RNN whole-sequence BPTT");
  m.def("keep_masks", &keep_masks, "zoneout's keep masks (uint8): torch.rand's numbers compared with each z, one pass");
  m.def("set_gemm", &set_gemm, "the kernels' GEMM engine: 'onednn' (float32 through oneDNN), 'blas' or 'auto'");
  m.def("intel_cpu", &gemm::intel_cpu, "whether CPUID names an Intel CPU (where 'auto' picks blas)");
  m.def("gemm_engine", &gemm_engine, "the kernels' GEMM engine in use");
  m.def("mm", &gemm_mm, "a b with the kernels' GEMM engine");
  m.def("mm_out", &gemm_mm_out, "out = a b with the kernels' GEMM engine (out may be strided)");
  m.def("addmm_out", &gemm_addmm_out, "out = c + a b with the kernels' GEMM engine");
  m.def("batch_threads", &batch_threads, "threads that ran for_batch's chunks (a test probe)");
}
