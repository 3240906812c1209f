// Tensor-core matmul for prompt batches: Y[M][N] = X[M][K] . W[N][K]^T, W in its GGUF blocks.
//
// Layout: W is N rows of K values (ggml blocks, row n contiguous); X is M rows of K fp16 values
// (16-byte aligned rows: K % 32 == 0); Y is M rows of N floats.
// Launch: a block of 256 threads (8 warps) per tile of 128 weight rows x 128 tokens, grid
// (ceil(N / 128), ceil(M / 128)). Per step of 32 values of K, each thread decodes two groups of 8
// weights to fp16 (Loader::fetch before the step's products, Loader::decode after, so the loads
// are in flight while the tensor cores work) and copies two 16-byte chunks of X with cp.async;
// both tiles are double-buffered in shared memory, rows padded to 40 halves (80 bytes) so the 8
// row addresses of an ldmatrix fall in distinct banks. Warp w computes 64 weight rows
// (w % 2) x 32 tokens (w / 2) as 4 x 4 mma.m16n8k16 tiles (fp16 in, f32 accumulators).
// Bound: compute (tensor cores) at prompt sizes: each weight byte is read ceil(M / 128) times and
// each X value ceil(N / 128) times, both from L2 mostly.
// Precision: weights rounded once to fp16 (relative 2^-11), activations as given (fp16), f32 sums.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>

#include "../cpu/quant_blocks.h"
#include "block_loads.cuh"
#include "engine/gpu_layout.h"
#include "matmul.h"
#include "scheduler/cuda_check.h"

#if defined(__CUDA_ARCH__)
#define MATMUL_UNROLL _Pragma("unroll")
#else
#define MATMUL_UNROLL
#endif

namespace engine {
namespace {

constexpr int kTileRows = 128;    // weight rows per block
constexpr int kTileTokens = 128;  // tokens per block
constexpr int kTileK = 32;        // values of K per step
constexpr int kPitch = kTileK + 8;
constexpr int kThreads = 256;

__host__ __device__ __forceinline__ uint16_t f2h(float v) { return __half_as_ushort(__float2half_rn(v)); }

__host__ __device__ __forceinline__ uint4 pack8(const float v[8]) {
  uint32_t w[4];
MATMUL_UNROLL
  for (int j = 0; j < 4; ++j) w[j] = uint32_t(f2h(v[2 * j])) | (uint32_t(f2h(v[2 * j + 1])) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Byte j (0..7) of two little-endian words.
__host__ __device__ __forceinline__ uint32_t byte8(const uint32_t q[2], int j) {
  return (q[j / 4] >> (8 * (j % 4))) & 255u;
}

// Eight bytes from a 2-byte aligned address.
__host__ __device__ __forceinline__ void ld8_aligned2(const uint8_t* p, uint32_t q[2]) {
  q[0] = load4_aligned2(p);
  q[1] = load4_aligned2(p + 4);
}

// Every loader: Raw holds the words a group of eight values (k .. k + 7, k % 8 == 0) needs;
// fetch(row, k, K) loads them (rows of K values, in the GPU layout: engine/gpu_layout.h),
// decode(raw, k) turns them into eight fp16 values (a uint4).

// Q4_K and Q5_K: value e = k % 256 of a super-block is in group g = e / 32 (6-bit scale and min,
// packed as unpack_scale_min_k4 reads them), nibble g % 2 of qs byte 32 (g / 2) + e % 32; Q5_K
// adds bit g of qh byte e % 32 as bit 4. The scales are unpacked in decode, from the three words
// fetch loaded, by scale_min_k4 (selects, as the matvec) rather than unpack_scale_min_k4's
// branches and byte loads: fetch only
// issues loads, which stay in flight during the step's products (calling it in fetch made the
// Q4_K/Q5_K kernels spill, ptxas sm_90).
template <typename Block, bool kFiveBit>
struct Q45KTile {
  struct Raw {
    uint32_t dm, s[3], q[2], h[2];
  };
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    const Block& b = reinterpret_cast<const Block*>(row)[k / 256];
    const int e = int(k % 256), g = e / 32, l = e % 32;
    Raw r;
    r.dm = uint32_t(b.d) | (uint32_t(b.dmin) << 16);
    const auto* s = reinterpret_cast<const uint32_t*>(b.scales);
    r.s[0] = s[0];
    r.s[1] = s[1];
    r.s[2] = s[2];
    const uint2 q = *reinterpret_cast<const uint2*>(b.qs + 32 * (g / 2) + l);
    r.q[0] = q.x;
    r.q[1] = q.y;
    r.h[0] = r.h[1] = 0;
    if constexpr (kFiveBit) {
      const uint2 h = *reinterpret_cast<const uint2*>(b.qh + l);
      r.h[0] = h.x;
      r.h[1] = h.y;
    }
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t k) {
    const int g = int(k % 256) / 32;
    float sc, mn;
    scale_min_k4(r.s[0], r.s[1], r.s[2], g, &sc, &mn);
    const float scale = h2f(uint16_t(r.dm & 0xffff)) * sc;
    const float offset = h2f(uint16_t(r.dm >> 16)) * mn;
    const int shift = 4 * (g % 2);
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) {
      uint32_t q = (byte8(r.q, j) >> shift) & 15;
      if constexpr (kFiveBit) q |= ((byte8(r.h, j) >> g) & 1) << 4;
      v[j] = scale * float(q) - offset;
    }
    return pack8(v);
  }
};

// Q6_K, in the GPU layout (a row's 208-byte records ql, qh, scales, then its d values): value e in
// half h = e / 128, quarter s = (e % 128) / 32, l = e % 32: nibble s / 2 of ql byte
// 64 h + 32 (s % 2) + l, bits 2s of qh byte 32 h + l, minus 32, times d and scales[e / 16].
struct Q6KTile {
  struct Raw {
    uint32_t ql[2], qh[2];
    int32_t scale;
    uint16_t d;
  };
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t K) {
    const int64_t i = k / 256;
    const uint8_t* rec = row + i * int64_t(kGpuQ6KRecordBytes);
    const int e = int(k % 256), h = e / 128, s = (e % 128) / 32, l = e % 32;
    Raw r;
    const uint2 ql = *reinterpret_cast<const uint2*>(rec + 64 * h + 32 * (s % 2) + l);  // l % 8 == 0
    const uint2 qh = *reinterpret_cast<const uint2*>(rec + 128 + 32 * h + l);
    r.ql[0] = ql.x, r.ql[1] = ql.y, r.qh[0] = qh.x, r.qh[1] = qh.y;
    r.scale = int8_t(rec[192 + e / 16]);
    r.d = reinterpret_cast<const uint16_t*>(row + (K / 256) * int64_t(kGpuQ6KRecordBytes))[i];
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t k) {
    const int s = int(k % 128) / 32;
    const float scale = h2f(r.d) * float(r.scale);
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) {
      const int q = int((byte8(r.ql, j) >> (4 * (s / 2))) & 15) | int(((byte8(r.qh, j) >> (2 * s)) & 3) << 4);
      v[j] = scale * float(q - 32);
    }
    return pack8(v);
  }
};

// Q8_0: value e = k % 32 is qs[e] * d.
struct Q8_0Tile {
  struct Raw {
    uint32_t q[2];
    uint16_t d;
  };
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[k / 32];
    Raw r;
    ld8_aligned2(reinterpret_cast<const uint8_t*>(b.qs) + k % 32, r.q);
    r.d = b.d;
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t) {
    const float d = h2f(r.d);
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) v[j] = d * float(int8_t(byte8(r.q, j)));
    return pack8(v);
  }
};

// Q4_0, Q4_1, Q5_0, Q5_1: value e = k % 32 is nibble e / 16 of qs[e % 16]; the 5-bit types add
// bit e of qh as bit 4. value = (q - offset) d (Q4_0: 8, Q5_0: 16) or q d + m (Q4_1, Q5_1).
template <typename Block, bool kFiveBit, bool kMin>
struct LegacyTile {
  struct Raw {
    uint32_t q[2], qh, dm;
  };
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    const Block& b = reinterpret_cast<const Block*>(row)[k / 32];
    Raw r;
    ld8_aligned2(b.qs + k % 16, r.q);
    r.qh = 0;
    if constexpr (kFiveBit) r.qh = load4_aligned2(b.qh);
    r.dm = b.d;
    if constexpr (kMin) r.dm |= uint32_t(b.m) << 16;
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t k) {
    const int e = int(k % 32), shift = 4 * (e / 16);
    const float d = h2f(uint16_t(r.dm & 0xffff)), m = h2f(uint16_t(r.dm >> 16));
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) {
      int q = int((byte8(r.q, j) >> shift) & 15);
      if constexpr (kFiveBit) q |= int((r.qh >> (e + j)) & 1) << 4;
      if constexpr (kMin) {
        v[j] = float(q) * d + m;
      } else {
        v[j] = float(q - (kFiveBit ? 16 : 8)) * d;
      }
    }
    return pack8(v);
  }
};

// F16: eight values as they are; BF16 and F32: converted (values past fp16's range saturate to
// infinity, as any fp16 conversion of such weights would).
struct F16Tile {
  using Raw = uint4;
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    return *reinterpret_cast<const uint4*>(row + 2 * k);
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t) { return r; }
};

struct BF16Tile {
  using Raw = uint4;
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    return *reinterpret_cast<const uint4*>(row + 2 * k);
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t) {
    const uint32_t words[4] = {r.x, r.y, r.z, r.w};
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t lo = words[j] << 16, hi = words[j] & 0xffff0000u;
      memcpy(&v[2 * j], &lo, 4);
      memcpy(&v[2 * j + 1], &hi, 4);
    }
    return pack8(v);
  }
};

struct F32Tile {
  struct Raw {
    float4 a, b;
  };
  __host__ __device__ static Raw fetch(const uint8_t* row, int64_t k, int64_t) {
    const auto* p = reinterpret_cast<const float4*>(row + 4 * k);
    return Raw{p[0], p[1]};
  }
  __host__ __device__ static uint4 decode(const Raw& r, int64_t) {
    const float v[8] = {r.a.x, r.a.y, r.a.z, r.a.w, r.b.x, r.b.y, r.b.z, r.b.w};
    return pack8(v);
  }
};

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(const void* smem, uint32_t r[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem)));
}

// c (16 x 8, f32) += a (16 x 16 fp16, row) . b (16 x 8 fp16, col)
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename Loader>
__global__ void __launch_bounds__(kThreads, 2)
    matmul_kernel(const uint8_t* __restrict__ w, uint64_t row_bytes, int64_t K, int64_t N,
                  const uint16_t* __restrict__ x, int64_t M, float* __restrict__ y, ProductEpilogue ep) {
  __shared__ __align__(16) uint16_t ws[2][kTileRows * kPitch];
  __shared__ __align__(16) uint16_t xs[2][kTileTokens * kPitch];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row0 = int64_t(blockIdx.x) * kTileRows, tok0 = int64_t(blockIdx.y) * kTileTokens;

  // This thread's two groups of 8 in each tile: group i = tid + 256 j is row (or token) i / 4,
  // values 8 (i % 4) .. + 7 of the step.
  int rows[2], cols[2];
  const uint8_t* wrow[2];
  const uint16_t* xrow[2];
  bool wvalid[2], xvalid[2];
MATMUL_UNROLL
  for (int j = 0; j < 2; ++j) {
    const int i = tid + kThreads * j;
    rows[j] = i / 4;
    cols[j] = 8 * (i % 4);
    wvalid[j] = row0 + rows[j] < N;
    xvalid[j] = tok0 + rows[j] < M;
    wrow[j] = w + (wvalid[j] ? row0 + rows[j] : 0) * row_bytes;
    xrow[j] = x + (xvalid[j] ? tok0 + rows[j] : 0) * K;
  }
  auto copy_x = [&](int buf, int64_t k0) {
MATMUL_UNROLL
    for (int j = 0; j < 2; ++j) cp_async16(&xs[buf][rows[j] * kPitch + cols[j]], xrow[j] + k0 + cols[j], xvalid[j]);
    cp_async_commit();
  };
  typename Loader::Raw raw[2];
  auto fetch_w = [&](int64_t k0) {
MATMUL_UNROLL
    for (int j = 0; j < 2; ++j) {
      if (wvalid[j]) raw[j] = Loader::fetch(wrow[j], k0 + cols[j], K);
    }
  };
  auto store_w = [&](int buf, int64_t k0) {
MATMUL_UNROLL
    for (int j = 0; j < 2; ++j) {
      const uint4 v = wvalid[j] ? Loader::decode(raw[j], k0 + cols[j]) : make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(&ws[buf][rows[j] * kPitch + cols[j]]) = v;
    }
  };

  const int wr = warp % 2, wt = warp / 2;  // this warp's 64 weight rows and 32 tokens
  float acc[4][4][4];
MATMUL_UNROLL
  for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
MATMUL_UNROLL
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
    }
  }

  const int64_t steps = K / kTileK;
  copy_x(0, 0);
  fetch_w(0);
  store_w(0, 0);
  cp_async_wait_all();
  __syncthreads();
  for (int64_t t = 0; t < steps; ++t) {
    const int cur = int(t % 2);
    const bool more = t + 1 < steps;
    if (more) {
      copy_x(cur ^ 1, (t + 1) * kTileK);
      fetch_w((t + 1) * kTileK);
    }
MATMUL_UNROLL
    for (int ks = 0; ks < kTileK; ks += 16) {
      // A fragments (ldmatrix x4 of a 16 x 16 tile): lanes 0-15 address rows 0-15 at column ks,
      // lanes 16-31 the same rows at ks + 8.
      uint32_t a[4][4];
MATMUL_UNROLL
      for (int i = 0; i < 4; ++i) {
        ldmatrix_x4(&ws[cur][(wr * 64 + i * 16 + lane % 16) * kPitch + ks + (lane / 16) * 8], a[i]);
      }
      // B fragments for two 8-token tiles per ldmatrix x4: matrices (tokens 0-7, k 0-7),
      // (0-7, 8-15), (8-15, 0-7), (8-15, 8-15), addressed by lanes 0-7, 8-15, 16-23, 24-31.
      uint32_t b[4][2];
MATMUL_UNROLL
      for (int jj = 0; jj < 2; ++jj) {
        uint32_t r[4];
        ldmatrix_x4(&xs[cur][(wt * 32 + jj * 16 + lane % 8 + (lane / 16) * 8) * kPitch + ks + ((lane / 8) % 2) * 8], r);
        b[2 * jj][0] = r[0];
        b[2 * jj][1] = r[1];
        b[2 * jj + 1][0] = r[2];
        b[2 * jj + 1][1] = r[3];
      }
MATMUL_UNROLL
      for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
        for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], a[i], b[j][0], b[j][1]);
      }
    }
    if (more) store_w(cur ^ 1, (t + 1) * kTileK);
    cp_async_wait_all();
    __syncthreads();
  }

  // Accumulator c of tile (i, j): rows g and g + 8, tokens 2 t4 and 2 t4 + 1 (g = lane / 4,
  // t4 = lane % 4), as the mma's C fragment lays them out.
  const int g = lane / 4, t4 = lane % 4;
MATMUL_UNROLL
  for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int64_t n = row0 + wr * 64 + i * 16 + g;
      const int64_t m = tok0 + wt * 32 + j * 8 + 2 * t4;
MATMUL_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int64_t nn = n + (r / 2) * 8, mm = m + r % 2;
        if (nn < N && mm < M) {
          const float v = acc[i][j][r] + (ep.bias != nullptr ? ep.bias[nn] : 0.0f);
          float& out = y[mm * N + nn];
          out = ep.accumulate ? out + v : v;
        }
      }
    }
  }
}

__global__ void to_f16_saturated_kernel(const float* __restrict__ x, uint16_t* __restrict__ x16, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x16[i] = f2h(fminf(fmaxf(x[i], -65504.0f), 65504.0f));
}

// Calls f.template operator()<Loader>(row_bytes) with the type's tile loader; false if it has none.
template <typename F>
bool with_loader(GgmlType type, int64_t K, F&& f) {
  const auto blocks = [&](uint64_t block_bytes, int64_t per) { return uint64_t(K / per) * block_bytes; };
  switch (type) {
    case GgmlType::F32: f.template operator()<F32Tile>(uint64_t(K) * 4); return true;
    case GgmlType::F16: f.template operator()<F16Tile>(uint64_t(K) * 2); return true;
    case GgmlType::BF16: f.template operator()<BF16Tile>(uint64_t(K) * 2); return true;
    case GgmlType::Q8_0: f.template operator()<Q8_0Tile>(blocks(sizeof(BlockQ8_0), 32)); return true;
    case GgmlType::Q4_0: f.template operator()<LegacyTile<BlockQ4_0, false, false>>(blocks(sizeof(BlockQ4_0), 32)); return true;
    case GgmlType::Q4_1: f.template operator()<LegacyTile<BlockQ4_1, false, true>>(blocks(sizeof(BlockQ4_1), 32)); return true;
    case GgmlType::Q5_0: f.template operator()<LegacyTile<BlockQ5_0, true, false>>(blocks(sizeof(BlockQ5_0), 32)); return true;
    case GgmlType::Q5_1: f.template operator()<LegacyTile<BlockQ5_1, true, true>>(blocks(sizeof(BlockQ5_1), 32)); return true;
    case GgmlType::Q4_K: f.template operator()<Q45KTile<BlockQ4_K, false>>(blocks(sizeof(BlockQ4_K), 256)); return true;
    case GgmlType::Q5_K: f.template operator()<Q45KTile<BlockQ5_K, true>>(blocks(sizeof(BlockQ5_K), 256)); return true;
    case GgmlType::Q6_K: f.template operator()<Q6KTile>(gpu_row_bytes(GgmlType::Q6_K, K)); return true;
    default: return false;
  }
}

}  // namespace

bool cuda_matmul_supports(GgmlType type, int64_t K) {
  const bool known = with_loader(type, K, [&]<typename Loader>(uint64_t) {});
  return known && K > 0 && K % kTileK == 0 && K % int64_t(traits(type).block_size) == 0;
}

void cuda_matmul_decode_row_on_host(GgmlType type, const void* row, int64_t K, uint16_t* out) {
  if (!cuda_matmul_supports(type, K)) throw_unsupported_type("cuda_matmul_decode_row_on_host", type);
  with_loader(type, K, [&]<typename Loader>(uint64_t) {
    const auto* bytes = static_cast<const uint8_t*>(row);
    for (int64_t k = 0; k < K; k += 8) {
      const uint4 v = Loader::decode(Loader::fetch(bytes, k, K), k);
      std::memcpy(out + k, &v, sizeof v);
    }
  });
}

void cuda_to_f16_saturated(const float* x, uint16_t* x16, int64_t n, void* stream) {
  if (n <= 0) return;
  const auto blocks = static_cast<unsigned>((n + 255) / 256);
  to_f16_saturated_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(x, x16, n);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

void cuda_matmul(GgmlType type, const void* w, int64_t K, int64_t N, const uint16_t* x16, int64_t M, float* y,
                 void* stream, ProductEpilogue ep) {
  const bool known = with_loader(type, K, [&]<typename Loader>(uint64_t row_bytes) {
    if (!cuda_matmul_supports(type, K)) throw_bad_argument("cuda_matmul", "K", K);
    if (M <= 0 || N <= 0) return;
    const dim3 grid(static_cast<unsigned>((N + kTileRows - 1) / kTileRows),
                    static_cast<unsigned>((M + kTileTokens - 1) / kTileTokens));
    matmul_kernel<Loader><<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const uint8_t*>(w), row_bytes, K, N, x16, M, y, ep);
  });
  if (!known) throw_unsupported_type("cuda_matmul", type);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
