// rnnbench's compiled kernels: one Python module, one source file per cell family.
#include <torch/extension.h>

void register_lstm(pybind11::module& m);
void register_gru(pybind11::module& m);
void register_rnn(pybind11::module& m);
void register_mlstm(pybind11::module& m);
void register_mrnn(pybind11::module& m);
void register_vc(pybind11::module& m);
void register_delta_rnn(pybind11::module& m);
void register_vcrnn(pybind11::module& m);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  register_lstm(m);
  register_gru(m);
  register_rnn(m);
  register_mlstm(m);
  register_mrnn(m);
  register_vc(m);
  register_delta_rnn(m);
  register_vcrnn(m);
}
