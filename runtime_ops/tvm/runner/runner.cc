// featcomp bundle runner: loads a TVM 0.27 Relax VM library (export_library) and runs `main`.
// No Python on the board: this, model.so, libtvm_runtime.so and libtvm_ffi.so are the whole payload.
//
// usage: runner MODEL.so OUT_PREFIX ITERS IN0.bin:1x3x224x224 [IN1.bin:DIMS ...]
//   inputs are raw float32 (C order); every output (a tensor or a tuple of tensors) is written raw to
//   OUT_PREFIX.<i>.bin; prints "output <i> <dtype> <dims>" per output (e.g. "output 0 float32 1x1000", so the
//   caller can check them against the manifest), then "outputs N, ms/run T" (T = mean over ITERS timed runs
//   after one warm-up; ITERS 0: one run, timed, no warm-up).
// MODEL.so must be a path containing '/' (dlopen searches the library path otherwise).
// exit codes: 0 ok, 2 usage, 3 bad input file, 4 TVM error.
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, n ? n : 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

static ffi::Tensor ReadInput(const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos) throw InputError("input '" + spec + "' needs :DIMS, e.g. x.bin:1x3x224x224");
  std::string path = spec.substr(0, colon);
  std::vector<int64_t> dims;
  std::stringstream ss(spec.substr(colon + 1));
  for (std::string d; std::getline(ss, d, 'x');) dims.push_back(std::stoll(d));
  ffi::Tensor x = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::Shape(dims), DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw InputError("cannot open input " + path);
  size_t want = ffi::GetDataSize(x), have = static_cast<size_t>(in.tellg());
  if (have != want)
    throw InputError("input " + path + " has " + std::to_string(have) + " bytes, the model expects " +
                     std::to_string(want) + " (float32 " + spec.substr(colon + 1) + ")");
  in.seekg(0);
  in.read(static_cast<char*>(x.data_ptr()), want);
  return x;
}

static std::string DType(DLDataType t) {
  const char* kind = t.code == kDLFloat ? "float" : t.code == kDLInt ? "int" : t.code == kDLUInt ? "uint"
                     : t.code == kDLBfloat ? "bfloat" : nullptr;
  if (t.code == kDLBool || (t.code == kDLUInt && t.bits == 1)) return "bool";
  std::string name = kind ? std::string(kind) + std::to_string(t.bits) : "code" + std::to_string(t.code);
  return t.lanes == 1 ? name : name + "x" + std::to_string(t.lanes);
}

static void Write(const ffi::Tensor& t, const std::string& path, int index) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(t.data_ptr()), ffi::GetDataSize(t));
  std::cout << "output " << index << " " << DType(t.dtype()) << " ";
  for (int i = 0; i < t.ndim(); ++i) std::cout << (i ? "x" : "") << t.shape()[i];
  std::cout << "\n";
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: runner MODEL.so OUT_PREFIX ITERS IN0.bin:1x3x224x224 ...\n";
    return 2;
  }
  std::vector<ffi::Any> args;
  try {
    for (int i = 4; i < argc; ++i) args.emplace_back(ReadInput(argv[i]));
  } catch (const InputError& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return 3;
  }
  try {
    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    // one device (CPU 0) with the pooled allocator (2), as relax.VirtualMachine(ex, tvm.cpu()) does
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
    ffi::Function main_fn = vm->GetFunction("main").value();
    std::string prefix = argv[2];
    int iters = std::atoi(argv[3]);
    std::vector<ffi::AnyView> views(args.begin(), args.end());
    ffi::Any out;
    if (iters > 0) main_fn.CallPacked(views.data(), static_cast<int>(views.size()), &out);  // warm-up
    iters = std::max(1, iters);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) main_fn.CallPacked(views.data(), static_cast<int>(views.size()), &out);
    auto t1 = std::chrono::steady_clock::now();
    int n_out = 0;
    if (auto t = out.try_cast<ffi::Tensor>()) {
      Write(*t, prefix + ".0.bin", 0);
      n_out = 1;
    } else {
      for (const ffi::Any& item : out.cast<ffi::Array<ffi::Any>>()) {
        Write(item.cast<ffi::Tensor>(), prefix + "." + std::to_string(n_out) + ".bin", n_out);
        ++n_out;
      }
    }
    std::cout << "outputs " << n_out << ", ms/run " << std::chrono::duration<double, std::milli>(t1 - t0).count() / iters
              << "\n";
  } catch (const std::exception& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return 4;
  }
  return 0;
}
