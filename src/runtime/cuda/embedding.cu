// Embedding lookups on the GPU. The ids come from the host, so they are validated there before
// anything is launched: an out-of-range id is a moshi::Error, never a wild read.
#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

// out[n, :] (+)= table[row(ids[n]), :]; id -1 embeds to zeros, other negatives read row 0.
template <typename TT>
__global__ void embedding_kernel(const TT* __restrict__ table, const int64_t* __restrict__ ids, float* __restrict__ out,
                                 int64_t N, int64_t D, bool accumulate) {
  MOSHI_GRID_STRIDE(i, N * D) {
    const int64_t n = i / D, d = i % D, id = ids[n];
    const float base = accumulate ? out[i] : 0.f;
    if (id == -1) {
      out[i] = base;
    } else {
      out[i] = base + load_widen(table + (id < 0 ? 0 : id) * D + d);
    }
  }
}

}  // namespace
}  // namespace cuda

void CudaBackend::embedding(const Tensor& table, const std::vector<int64_t>& ids, Tensor& out, bool accumulate) {
  impl_->enter(__func__);
  const char* op = "embedding";
  cuda::need_cuda(table, op, "table");
  MOSHI_CHECK(table.ndim() == 2 && (table.dtype() == DType::F32 || table.dtype() == DType::BF16),
              "cuda embedding: table ", shape_str(table.shape()), " is not a prepared embedding");
  const int64_t V = table.dim(0), D = table.dim(1), N = static_cast<int64_t>(ids.size());
  MOSHI_CHECK(out.numel() == N * D, "embedding: ", N, " ids for output ", shape_str(out.shape()));
  for (int64_t id : ids) MOSHI_CHECK(id < V, "token id ", id, " is out of range for an embedding of ", V, " rows");
  float* po = cuda::f32_of(out, op, "output");
  if (N * D == 0) return;
  cuda::Impl& im = *impl_;
  const int64_t* dids = im.put_args({&ids}, op);
  const dim3 grid(cuda::grid_for(im, N * D));
  if (table.dtype() == DType::BF16)
    cuda::launch(im, op, cuda::embedding_kernel<uint16_t>, grid, dim3(256), 0, table.ptr<uint16_t>(), dids, po, N, D,
                 accumulate);
  else
    cuda::launch(im, op, cuda::embedding_kernel<float>, grid, dim3(256), 0, table.f32(), dids, po, N, D, accumulate);
}

}  // namespace moshi
