// The cases of ../shared/testdata/hf_moe: every checkpoint folder, every MoE layer, both inputs
// (TAG one: T=1, batch: T=37), with the float64-computed expected output. Shared by engine and cluster tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/model/safetensors_file.h"
#include "runtime/model/tensor.h"

namespace moe::testdata {

inline std::filesystem::path hf_moe_dir() { return std::filesystem::path(MOE_TESTDATA_DIR) / "hf_moe"; }

#ifdef MOE_FAMILY_DATA_DIR
// tests/data/hf_moe_families: the checkpoints tools/make_test_checkpoints.py builds with transformers.
inline std::filesystem::path family_data_dir() { return std::filesystem::path(MOE_FAMILY_DATA_DIR); }
#endif

inline std::vector<std::filesystem::path> checkpoints(const std::filesystem::path& root = hf_moe_dir()) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(root))
    if (e.is_directory() && std::filesystem::exists(e.path() / "cases.safetensors")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

struct Case {
  std::string name;  // folder/layer/tag
  int32_t layer = 0;
  Matrix input;
  Matrix expected;
};

// Every case in DIR/cases.safetensors, named model.layers.L.mlp.TAG.{input,output}.
inline std::vector<Case> cases_of(const std::filesystem::path& dir) {
  auto file = SafetensorsFile::open(dir / "cases.safetensors");
  std::vector<Case> out;
  for (const std::string& name : file->names()) {
    const std::string suffix = ".input";
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    std::string stem = name.substr(0, name.size() - suffix.size());  // model.layers.L.mlp.TAG
    int32_t layer = std::stoi(stem.substr(std::string("model.layers.").size()));
    Case c;
    c.name = dir.filename().string() + "/" + stem;
    c.layer = layer;
    c.input = read_matrix(*file, name);
    c.expected = read_matrix(*file, stem + ".output");
    out.push_back(std::move(c));
  }
  return out;
}

// max |got - want| / max |want|, the testdata README's measure.
inline double relative_error(const Matrix& got, const Matrix& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.data.size(); ++i) {
    num = std::max(num, static_cast<double>(std::abs(got.data[i] - want.data[i])));
    den = std::max(den, static_cast<double>(std::abs(want.data[i])));
  }
  return den == 0 ? num : num / den;
}

}  // namespace moe::testdata
