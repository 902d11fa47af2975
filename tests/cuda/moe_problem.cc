// Random MoE-layer problems and their double-precision reference (see moe_problem.h).
#include "tests/cuda/moe_problem.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <set>
#include <sstream>

namespace moe::cuda_test {
namespace {

// f32 -> f16 bits (round to nearest even), normal range only: test values are small but not tiny.
uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffffu;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // flush tiny values to zero
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}

double widen(DType dtype, const std::vector<uint32_t>& w32, const std::vector<uint16_t>& w16, size_t i) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, &w32[i], 4);
      return f;
    }
    case DType::BF16: return bf16_to_f32(w16[i]);
    case DType::F16: return f16_to_f32(w16[i]);
  }
  return 0;
}

void fill(DType dtype, size_t n, float scale, std::mt19937_64& rng, std::vector<uint32_t>& w32,
          std::vector<uint16_t>& w16) {
  std::uniform_real_distribution<float> u(-scale, scale);
  if (dtype == DType::F32) {
    w32.resize(n);
    for (auto& v : w32) {
      const float f = u(rng);
      std::memcpy(&v, &f, 4);
    }
  } else {
    w16.resize(n);
    for (auto& v : w16) v = dtype == DType::BF16 ? f32_to_bf16(u(rng)) : f32_to_f16(u(rng));
  }
}

}  // namespace

ExpertWeightsView TestExpert::view() const {
  auto matrix = [&](const std::vector<uint32_t>& w32, const std::vector<uint16_t>& w16, int64_t rows, int64_t cols) {
    const void* data = dtype == DType::F32 ? static_cast<const void*>(w32.data()) : static_cast<const void*>(w16.data());
    return WeightMatrixView{dtype, data, rows, cols};
  };
  return ExpertWeightsView{matrix(gate32, gate16, inter, hidden), matrix(up32, up16, inter, hidden),
                           matrix(down32, down16, hidden, inter)};
}

double TestExpert::gate(int64_t r, int64_t c) const { return widen(dtype, gate32, gate16, r * hidden + c); }
double TestExpert::up(int64_t r, int64_t c) const { return widen(dtype, up32, up16, r * hidden + c); }
double TestExpert::down(int64_t r, int64_t c) const { return widen(dtype, down32, down16, r * inter + c); }

TestExpert random_expert(int64_t hidden, int64_t inter, DType dtype, std::mt19937_64& rng) {
  TestExpert e;
  e.hidden = hidden;
  e.inter = inter;
  e.dtype = dtype;
  // Scales keep gate·x around 1 (SiLU's curved part) and outputs around 1.
  const float in_scale = 1.7f / std::sqrt(static_cast<float>(hidden));
  const float out_scale = 1.7f / std::sqrt(static_cast<float>(inter));
  const size_t n = static_cast<size_t>(hidden * inter);
  fill(dtype, n, in_scale, rng, e.gate32, e.gate16);
  fill(dtype, n, in_scale, rng, e.up32, e.up16);
  fill(dtype, n, out_scale, rng, e.down32, e.down16);
  return e;
}

std::vector<TokenAssignment> random_routing(const RoutingSpec& spec, std::mt19937_64& rng) {
  std::vector<TokenAssignment> out;
  std::vector<int32_t> pool = spec.candidates;
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  const int32_t k = std::min<int32_t>(spec.top_k, static_cast<int32_t>(pool.size()));
  for (int64_t t = 0; t < spec.num_tokens; ++t) {
    if (u01(rng) < spec.unrouted_fraction) continue;
    // Partial Fisher-Yates: the first k of pool become this token's experts.
    std::vector<double> w(static_cast<size_t>(k));
    for (int32_t j = 0; j < k; ++j) {
      std::uniform_int_distribution<size_t> pick(static_cast<size_t>(j), pool.size() - 1);
      std::swap(pool[static_cast<size_t>(j)], pool[pick(rng)]);
      w[static_cast<size_t>(j)] = std::exp(2.0 * u01(rng));
    }
    const double sum = std::accumulate(w.begin(), w.end(), 0.0);
    for (int32_t j = 0; j < k; ++j) {
      out.push_back({static_cast<int32_t>(t), pool[static_cast<size_t>(j)], static_cast<float>(w[j] / sum)});
    }
  }
  std::shuffle(out.begin(), out.end(), rng);  // the backend must not rely on any order
  return out;
}

std::vector<float> random_activations(int64_t rows, int64_t hidden, std::mt19937_64& rng) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(rows * hidden));
  for (auto& v : x) v = n(rng);
  return x;
}

std::vector<std::vector<double>> reference_rows(const std::map<int32_t, TestExpert>& experts,
                                                const std::vector<float>& x, int64_t hidden,
                                                const std::vector<TokenAssignment>& assignments,
                                                const std::vector<int64_t>& rows) {
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < rows.size(); ++i) index[rows[i]] = i;
  std::vector<std::vector<double>> out(rows.size(), std::vector<double>(static_cast<size_t>(hidden), 0.0));
  std::vector<double> h;
  for (const auto& a : assignments) {
    auto it = index.find(a.token);
    if (it == index.end()) continue;
    const TestExpert& e = experts.at(a.expert);
    const float* xr = x.data() + a.token * hidden;
    h.assign(static_cast<size_t>(e.inter), 0.0);
    for (int64_t i = 0; i < e.inter; ++i) {
      double g = 0, u = 0;
      for (int64_t c = 0; c < hidden; ++c) {
        g += e.gate(i, c) * xr[c];
        u += e.up(i, c) * xr[c];
      }
      h[static_cast<size_t>(i)] = g / (1.0 + std::exp(-g)) * u;
    }
    std::vector<double>& o = out[it->second];
    for (int64_t j = 0; j < hidden; ++j) {
      double y = 0;
      for (int64_t i = 0; i < e.inter; ++i) y += e.down(j, i) * h[static_cast<size_t>(i)];
      o[static_cast<size_t>(j)] += static_cast<double>(a.weight) * y;
    }
  }
  return out;
}

std::vector<int64_t> sample_rows(int64_t num_tokens, int64_t max_rows, std::mt19937_64& rng) {
  std::vector<int64_t> rows;
  if (num_tokens <= max_rows) {
    rows.resize(static_cast<size_t>(num_tokens));
    std::iota(rows.begin(), rows.end(), 0);
    return rows;
  }
  std::set<int64_t> picked = {0, num_tokens - 1};
  std::uniform_int_distribution<int64_t> pick(0, num_tokens - 1);
  while (static_cast<int64_t>(picked.size()) < max_rows) picked.insert(pick(rng));
  return {picked.begin(), picked.end()};
}

Comparison compare_rows(const std::vector<float>& got, int64_t hidden, const std::vector<int64_t>& rows,
                        const std::vector<std::vector<double>>& ref) {
  Comparison c;
  double diff_all = 0, norm_all = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* g = got.data() + rows[i] * hidden;
    double diff = 0, norm = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      const double r = ref[i][static_cast<size_t>(j)];
      if (!std::isfinite(g[j])) {
        ++c.nonfinite;
        continue;
      }
      diff += (g[j] - r) * (g[j] - r);
      norm += r * r;
    }
    if (norm == 0) {
      for (int64_t j = 0; j < hidden; ++j) c.nonzero_in_empty += g[j] != 0.f;
      continue;
    }
    c.worst_row_error = std::max(c.worst_row_error, std::sqrt(diff / norm));
    diff_all += diff;
    norm_all += norm;
  }
  c.relative_error = norm_all > 0 ? std::sqrt(diff_all / norm_all) : 0;
  return c;
}

std::string Comparison::describe() const {
  std::ostringstream s;
  s << "relative error " << relative_error << ", worst row " << worst_row_error << ", non-finite " << nonfinite
    << ", non-zero in empty rows " << nonzero_in_empty;
  return s.str();
}

uint64_t test_seed() {
  if (const char* env = std::getenv("MOE_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

}  // namespace moe::cuda_test
