// MLX CPU primitives for the VideoPrism model's element-wise work (float32): the exact-erf
// GELU, the capped softmax and LayerNorm. MLX's own CPU kernels for these are scalar code on
// x86; these are vectorised, with the instruction set picked at run time (AVX-512, AVX2+FMA,
// or the compiler's baseline), so one build runs on any CPU of its architecture.
// Built and loaded by fiftyone_videoprism/core/kernels.py.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <nanobind/nanobind.h>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"
#include "mlx/utils.h"

namespace mx = mlx::core;
namespace nb = nanobind;

#if defined(__x86_64__)
namespace isa_avx512 {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
#define VP_WIDTH 16
#include "vector_math.inc"
#undef VP_WIDTH
#pragma GCC pop_options
}  // namespace isa_avx512

namespace isa_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VP_WIDTH 8
#include "vector_math.inc"
#undef VP_WIDTH
#pragma GCC pop_options
}  // namespace isa_avx2
#endif

namespace isa_base {
#define VP_WIDTH 4
#include "vector_math.inc"
#undef VP_WIDTH
}  // namespace isa_base

namespace {

struct Kernels {
  const char* isa;
  void (*gelu)(const float*, float*, size_t);
  void (*capped_softmax)(const float*, float*, size_t, size_t, float);
  void (*layer_norm)(const float*, const float*, const float*, float*, size_t, size_t, float);
};

#define VP_KERNELS(ns, label) Kernels{label, ns::gelu, ns::capped_softmax, ns::layer_norm}

const Kernels& kernels() {
  static const Kernels chosen = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
      return VP_KERNELS(isa_avx512, "avx512");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return VP_KERNELS(isa_avx2, "avx2");
#endif
    return VP_KERNELS(isa_base, "baseline");
  }();
  return chosen;
}

// A primitive with one output shaped like its first input, run on the CPU only: the output
// takes that input's buffer when MLX may donate it (an intermediate nothing else reads).
class CpuPrimitive : public mx::UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("vpkernels: CPU only");
  }

 protected:
  // Gives ``out`` its buffer and returns the stream's encoder with the arrays registered;
  // the kernel is dispatched after, once out.data() is final.
  mx::cpu::CommandEncoder& prepare(const std::vector<mx::array>& inputs, mx::array& out) {
    const auto& in = inputs[0];
    if (in.is_donatable() && in.itemsize() == out.itemsize()) {
      out.copy_shared_buffer(in);
    } else {
      out.set_data(mx::allocator::malloc(out.nbytes()));
    }
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const auto& a : inputs) enc.set_input_array(a);
    enc.set_output_array(out);
    return enc;
  }
};

class Gelu : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    auto& enc = prepare(inputs, out);
    enc.dispatch([src = inputs[0].data<float>(), dst = out.data<float>(), n = out.size()]() {
      kernels().gelu(src, dst, n);
    });
  }
  const char* name() const override { return "VideoPrismGelu"; }
  bool is_equivalent(const mx::Primitive&) const override { return true; }
};

class CappedSoftmax : public CpuPrimitive {
 public:
  CappedSoftmax(mx::Stream s, float cap) : CpuPrimitive(s), cap_(cap) {}
  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    const size_t n = inputs[0].shape(-1);
    auto& enc = prepare(inputs, out);
    enc.dispatch([src = inputs[0].data<float>(), dst = out.data<float>(), rows = out.size() / n,
                  n, cap = cap_]() { kernels().capped_softmax(src, dst, rows, n, cap); });
  }
  const char* name() const override { return "VideoPrismCappedSoftmax"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return cap_ == static_cast<const CappedSoftmax&>(other).cap_;
  }

 private:
  float cap_;
};

class LayerNorm : public CpuPrimitive {
 public:
  LayerNorm(mx::Stream s, float eps) : CpuPrimitive(s), eps_(eps) {}
  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    const size_t d = inputs[0].shape(-1);
    auto& enc = prepare(inputs, out);
    enc.dispatch([src = inputs[0].data<float>(), w = inputs[1].data<float>(),
                  b = inputs[2].data<float>(), dst = out.data<float>(), rows = out.size() / d, d,
                  eps = eps_]() { kernels().layer_norm(src, w, b, dst, rows, d, eps); });
  }
  const char* name() const override { return "VideoPrismLayerNorm"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return eps_ == static_cast<const LayerNorm&>(other).eps_;
  }

 private:
  float eps_;
};

mx::array float32_rows(const mx::array& a, const char* what, mx::Stream s) {
  if (a.dtype() != mx::float32) throw std::invalid_argument(std::string(what) + ": float32 only");
  if (a.ndim() < 1 || a.size() == 0) throw std::invalid_argument(std::string(what) + ": empty");
  return mx::contiguous(a, false, s);
}

mx::array gelu(const mx::array& x) {
  auto s = mx::to_stream({});
  auto xc = float32_rows(x, "gelu", s);
  return mx::array(xc.shape(), mx::float32, std::make_shared<Gelu>(s), {xc});
}

mx::array capped_softmax(const mx::array& u, float cap) {
  if (!(cap > 0.f && cap <= 50.f)) throw std::invalid_argument("capped_softmax: 0 < cap <= 50");
  auto s = mx::to_stream({});
  auto uc = float32_rows(u, "capped_softmax", s);
  return mx::array(uc.shape(), mx::float32, std::make_shared<CappedSoftmax>(s, cap), {uc});
}

mx::array layer_norm(const mx::array& x, const mx::array& w, const mx::array& b, float eps) {
  auto s = mx::to_stream({});
  auto xc = float32_rows(x, "layer_norm", s);
  const int d = xc.shape(-1);
  if (w.ndim() != 1 || b.ndim() != 1 || w.shape(0) != d || b.shape(0) != d)
    throw std::invalid_argument("layer_norm: weight and bias must be (D,)");
  return mx::array(xc.shape(), mx::float32, std::make_shared<LayerNorm>(s, eps),
                   {xc, float32_rows(w, "layer_norm", s), float32_rows(b, "layer_norm", s)});
}

}  // namespace

NB_MODULE(_vpkernels, m) {
  m.def("gelu", &gelu, nb::arg("x"), "Exact (erf) GELU, float32, CPU.");
  m.def("capped_softmax", &capped_softmax, nb::arg("u"), nb::arg("cap"),
        "softmax(cap * tanh(u)) over the last axis, 0 < cap <= 50, float32, CPU.");
  m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight"), nb::arg("bias"),
        nb::arg("eps"), "LayerNorm over the last axis, float32, CPU.");
  m.def("isa", [] { return kernels().isa; }, "The instruction set the kernels run with.");
}
