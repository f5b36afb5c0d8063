// Embedding lookups on the GPU. Ids from the host are validated there before anything is
// launched (an out-of-range id is a moshi::Error, never a wild read); ids already on the device
// (drawn by `sample`) are clamped to the table and checked by the caller once read back.
#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

// out[n, :] (+)= table[row(ids[n·S]), :]; id -1 embeds to zeros, other negatives read row 0,
// ids past the table read its last row.
template <typename TT>
__global__ void embedding_kernel(const TT* __restrict__ table, const int64_t* __restrict__ ids, int64_t S,
                                 float* __restrict__ out, int64_t N, int64_t V, int64_t D, bool accumulate) {
  pdl_trigger();
  pdl_wait();
  MOSHI_GRID_STRIDE(i, N * D) {
    const int64_t n = i / D, d = i % D, id = min(ids[n * S], V - 1);
    const float base = accumulate ? out[i] : 0.f;
    if (id == -1) {
      out[i] = base;
    } else {
      out[i] = base + load_widen(table + (id < 0 ? 0 : id) * D + d);
    }
  }
}

// Up to kMaxTables tables of one dtype and width D for embedding_sum_kernel.
constexpr int kMaxTables = 32;
struct Tables {
  const void* p[kMaxTables];
  int64_t rows[kMaxTables];
};

// out[n, :] = Σ_s table_s[row(ids[s·N + n]), :], added in the order of s from zero as
// embedding_kernel's first (overwriting) and later (accumulating) launches add them.
template <typename TT>
__global__ void embedding_sum_kernel(Tables t, int S, const int64_t* __restrict__ ids, float* __restrict__ out,
                                     int64_t N, int64_t D) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(i, N * D) {
    const int64_t n = i / D, d = i % D;
    float acc = 0.f;
    for (int s = 0; s < S; ++s) {
      const int64_t id = min(ids[s * N + n], t.rows[s] - 1);
      if (id != -1) acc = acc + load_widen(static_cast<const TT*>(t.p[s]) + (id < 0 ? 0 : id) * D + d);
    }
    out[i] = acc;
  }
}

void launch_embedding(Impl& im, const Tensor& table, const int64_t* ids, int64_t S, float* out, int64_t N,
                      bool accumulate) {
  const char* op = "embedding";
  const int64_t V = table.dim(0), D = table.dim(1);
  const dim3 grid(grid_for(im, N * D));
  if (table.dtype() == DType::BF16)
    cuda::launch_chain(im, op, embedding_kernel<uint16_t>, grid, dim3(256), 0, table.ptr<uint16_t>(), ids, S, out, N, V,
                       D, accumulate);
  else
    cuda::launch_chain(im, op, embedding_kernel<float>, grid, dim3(256), 0, table.f32(), ids, S, out, N, V, D,
                       accumulate);
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
  cuda::launch_embedding(im, table, im.put_args({&ids}, op), 1, po, N, accumulate);
}

void CudaBackend::embedding_sum(const std::vector<const Tensor*>& tables, const std::vector<int64_t>& ids,
                                Tensor& out) {
  impl_->enter(__func__);
  const char* op = "embedding_sum";
  const int64_t S = static_cast<int64_t>(tables.size());
  MOSHI_CHECK(S > 0 && static_cast<int64_t>(ids.size()) % S == 0, "embedding_sum: ", ids.size(), " ids for ", S,
              " tables");
  const int64_t N = static_cast<int64_t>(ids.size()) / S, D = tables[0]->ndim() == 2 ? tables[0]->dim(1) : -1;
  const DType dt = tables[0]->dtype();
  bool one_kernel = S <= cuda::kMaxTables && (dt == DType::F32 || dt == DType::BF16);
  cuda::Tables t{};
  for (int64_t k = 0; k < S && one_kernel; ++k) {
    const Tensor& tab = *tables[k];
    cuda::need_cuda(tab, op, "table");
    one_kernel = tab.ndim() == 2 && tab.dim(1) == D && tab.dtype() == dt;
    if (!one_kernel) break;
    for (int64_t i = 0; i < N; ++i)
      MOSHI_CHECK(ids[k * N + i] < tab.dim(0), "token id ", ids[k * N + i], " is out of range for an embedding of ",
                  tab.dim(0), " rows");
    t.p[k] = tab.data();
    t.rows[k] = tab.dim(0);
  }
  if (!one_kernel) return Backend::embedding_sum(tables, ids, out);
  MOSHI_CHECK(out.numel() == N * D, "embedding_sum: ", N, " ids per table for output ", shape_str(out.shape()));
  float* po = cuda::f32_of(out, op, "output");
  if (N * D == 0) return;
  cuda::Impl& im = *impl_;
  const int64_t* pid = im.put_args({&ids}, op);
  const dim3 grid(cuda::grid_for(im, N * D));
  if (dt == DType::BF16)
    cuda::launch(im, op, cuda::embedding_sum_kernel<uint16_t>, grid, dim3(256), 0, t, static_cast<int>(S), pid, po, N,
                 D);
  else
    cuda::launch(im, op, cuda::embedding_sum_kernel<float>, grid, dim3(256), 0, t, static_cast<int>(S), pid, po, N, D);
}

void CudaBackend::embedding_from(const Tensor& table, const Tensor& ids, int64_t col, Tensor& out, bool accumulate) {
  impl_->enter(__func__);
  const char* op = "embedding";
  cuda::need_cuda(table, op, "table");
  cuda::need_cuda(ids, op, "ids");
  MOSHI_CHECK(table.ndim() == 2 && (table.dtype() == DType::F32 || table.dtype() == DType::BF16),
              "cuda embedding: table ", shape_str(table.shape()), " is not a prepared embedding");
  MOSHI_CHECK(ids.dtype() == DType::I64 && ids.ndim() == 2 && col >= 0 && col < ids.dim(1),
              "embedding_from: ids ", shape_str(ids.shape()), " have no column ", col);
  const int64_t N = ids.dim(0), D = table.dim(1);
  MOSHI_CHECK(out.numel() == N * D, "embedding: ", N, " ids for output ", shape_str(out.shape()));
  float* po = cuda::f32_of(out, op, "output");
  if (N * D == 0) return;
  cuda::launch_embedding(*impl_, table, ids.i64() + col, ids.dim(1), po, N, accumulate);
}

}  // namespace moshi
