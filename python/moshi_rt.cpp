// Python bindings (pybind11) mirroring the C++ API: numpy arrays in and out, the GIL released
// during model work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "moshi/mimi.h"
#include "moshi/model.h"
#include "moshi/run.h"

namespace py = pybind11;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

py::array_t<float> to_numpy(std::vector<float>&& v) {
  auto* heap = new std::vector<float>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>({static_cast<py::ssize_t>(heap->size())}, {sizeof(float)}, heap->data(), owner);
}

moshi::SamplingOptions sampling(const moshi::Model& m, bool greedy, std::optional<float> temp,
                                std::optional<float> temp_text, std::optional<int> top_k,
                                std::optional<int> top_k_text) {
  moshi::SamplingOptions s = m.default_sampling();
  s.greedy = greedy;
  if (temp) s.temp = *temp;
  if (temp_text) s.temp_text = *temp_text;
  if (top_k) s.top_k = *top_k;
  if (top_k_text) s.top_k_text = *top_k_text;
  return s;
}

}  // namespace

PYBIND11_MODULE(moshi_rt, m) {
  m.doc() = "moshi-rt: inference for Kyutai's Moshi (speech LM) and Mimi (audio codec)";
  py::register_exception<moshi::Error>(m, "Error", PyExc_RuntimeError);
  m.attr("__version__") = MOSHI_RT_VERSION;

  py::class_<moshi::Mimi>(m, "Mimi", "The Mimi codec: 24 kHz mono audio <-> 12.5 Hz integer codes.")
      .def_static(
          "load",
          [](const std::string& spec, const std::string& device, int threads, int num_codebooks, uint64_t seed) {
            moshi::MimiOptions o;
            o.device = device;
            o.threads = threads;
            o.num_codebooks = num_codebooks;
            o.seed = seed;
            py::gil_scoped_release nogil;
            return moshi::Mimi::load(spec, o);
          },
          py::arg("spec"), py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("num_codebooks") = 0,
          py::arg("seed") = 0,
          "spec: a checkpoint path, or 'synthetic' (the real shapes, random weights: no meaningful audio)")
      .def_property_readonly("frame_size", &moshi::Mimi::frame_size)
      .def_property_readonly("sample_rate", &moshi::Mimi::sample_rate)
      .def_property_readonly("num_codebooks", &moshi::Mimi::num_codebooks)
      .def(
          "encode",
          [](const moshi::Mimi& mimi, F32 pcm) {
            if (pcm.ndim() != 1) throw moshi::Error("encode: pcm must be a 1-D float32 array");
            std::vector<float> x(pcm.data(), pcm.data() + pcm.size());
            int64_t T = 0;
            std::vector<int64_t> codes;
            {
              py::gil_scoped_release nogil;
              codes = mimi.encode(x, &T);
            }
            const int64_t K = mimi.num_codebooks();
            py::array_t<int64_t> out({K, T});
            std::copy(codes.begin(), codes.end(), out.mutable_data());
            return out;
          },
          py::arg("pcm"), "mono float32 audio -> int64 codes [K, T] (zero-padded to whole 80 ms frames)")
      .def(
          "decode",
          [](const moshi::Mimi& mimi, I64 codes) {
            if (codes.ndim() != 2) throw moshi::Error("decode: codes must be a 2-D int64 array [K, T]");
            const int K = static_cast<int>(codes.shape(0));
            const int64_t T = codes.shape(1);
            std::vector<int64_t> c(codes.data(), codes.data() + codes.size());
            std::vector<float> y;
            {
              py::gil_scoped_release nogil;
              y = mimi.decode(c, K, T);
            }
            return to_numpy(std::move(y));
          },
          py::arg("codes"), "int64 codes [K, T] -> float32 audio (1920·T samples)");

  py::class_<moshi::Session>(m, "Session", "One conversation with a Model.")
      .def(
          "step",
          [](moshi::Session& s, F32 frame) {
            if (frame.ndim() != 1) throw moshi::Error("step: frame must be a 1-D float32 array");
            std::vector<float> out;
            std::string text;
            {
              py::gil_scoped_release nogil;
              s.push_audio(frame.data(), static_cast<size_t>(frame.size()));
              s.pull_audio(out);
              for (const auto& p : s.pull_text()) text += p.text;
            }
            return py::make_tuple(to_numpy(std::move(out)), text);
          },
          py::arg("frame"),
          "push user audio (any length; usually one 1920-sample frame) -> (model pcm, text) produced meanwhile")
      .def(
          "reset", [](moshi::Session& s) { s.reset(); }, "back to the initial state, RNG included");

  py::class_<moshi::Model>(m, "Model", "A complete Moshi model: LM, Mimi and text tokenizer.")
      .def_static(
          "load",
          [](const std::string& spec, const std::string& device, const std::string& dtype, int threads,
             bool download) {
            moshi::ModelOptions o;
            o.device = device;
            o.weights_dtype = dtype;
            o.threads = threads;
            o.download = download;
            py::gil_scoped_release nogil;
            return moshi::Model::load(spec, o);
          },
          py::arg("spec"), py::arg("device") = "cpu", py::arg("dtype") = "auto", py::arg("threads") = 0,
          py::arg("download") = true,
          "spec: a model directory, a Hugging Face repo id, 'synthetic:tiny' or 'synthetic:moshi-7b'")
      .def_property_readonly("sample_rate", &moshi::Model::sample_rate)
      .def_property_readonly("frame_size", &moshi::Model::frame_size)
      .def_property_readonly("synthetic", &moshi::Model::synthetic)
      .def(
          "session",
          [](const moshi::Model& model, uint64_t seed, bool greedy, std::optional<float> temp,
             std::optional<float> temp_text, std::optional<int> top_k, std::optional<int> top_k_text) {
            moshi::SessionOptions so;
            so.seed = seed;
            so.sampling = sampling(model, greedy, temp, temp_text, top_k, top_k_text);
            return model.session(so);
          },
          py::arg("seed") = 0, py::arg("greedy") = false, py::arg("temp") = py::none(),
          py::arg("temp_text") = py::none(), py::arg("top_k") = py::none(), py::arg("top_k_text") = py::none());

  m.def(
      "run_file",
      [](const moshi::Model& model, const std::string& input, const std::string& output, uint64_t seed,
         double after, bool stereo, bool greedy, std::optional<float> temp, std::optional<float> temp_text,
         std::optional<int> top_k, std::optional<int> top_k_text) {
        moshi::RunOptions ro;
        ro.session.seed = seed;
        ro.session.sampling = sampling(model, greedy, temp, temp_text, top_k, top_k_text);
        ro.after_s = after;
        ro.stereo = stereo;
        moshi::RunResult r;
        {
          py::gil_scoped_release nogil;
          r = moshi::run_file(model, input, output, ro);
        }
        py::list pieces;
        for (const auto& p : r.text)
          pieces.append(py::dict(py::arg("frame") = p.frame, py::arg("time_s") = p.time_s,
                                 py::arg("token") = p.token, py::arg("text") = p.text));
        return py::dict(py::arg("transcript") = r.transcript, py::arg("text") = pieces,
                        py::arg("frames") = r.frames, py::arg("output_seconds") = r.output_seconds);
      },
      py::arg("model"), py::arg("input"), py::arg("output"), py::arg("seed") = 0, py::arg("after") = 2.0,
      py::arg("stereo") = false, py::arg("greedy") = false, py::arg("temp") = py::none(),
      py::arg("temp_text") = py::none(), py::arg("top_k") = py::none(), py::arg("top_k_text") = py::none(),
      "speech to speech from a file, as `moshi-rt run`: returns transcript, text pieces, frames");
}
