// Typed access to the keys of an HF config.json; every failure names the key, the config's source and
// its model_type. Shared by the family parsers (family_config.cc).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"

namespace moe {

// Typed access to config keys; every failure names the key and where the config came from.
class ConfigReader {
 public:
  using json = nlohmann::json;

  ConfigReader(const json& config, std::string source, std::string model_type)
      : config_(config), source_(std::move(source)), model_type_(std::move(model_type)) {}

  const json& config() const { return config_; }
  bool has(const std::string& key) const { return config_.contains(key) && !config_.at(key).is_null(); }

  int64_t integer(const std::string& key, int64_t min_value) const {
    if (!has(key)) fail("missing key '" + key + "'");
    return integer_value(key, config_.at(key), min_value);
  }
  int64_t integer_or(const std::string& key, int64_t min_value, int64_t fallback) const {
    return has(key) ? integer_value(key, config_.at(key), min_value) : fallback;
  }
  bool boolean_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_.at(key);
    if (!v.is_boolean()) fail("key '" + key + "' must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  double number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      fail("key '" + key + "' must be a finite number, got " + v.dump());
    return v.get<double>();
  }
  std::vector<int32_t> integer_list_or_empty(const std::string& key) const {
    std::vector<int32_t> out;
    if (!has(key)) return out;
    const json& v = config_.at(key);
    if (!v.is_array()) fail("key '" + key + "' must be a list of layer indices, got " + v.dump());
    for (const json& item : v) out.push_back(static_cast<int32_t>(integer_value(key, item, 0)));
    return out;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelError(source_ + ": " + what + " (model_type " + model_type_ + ")");
  }

 private:
  int64_t integer_value(const std::string& key, const json& v, int64_t min_value) const {
    bool integral = v.is_number_integer() ||
                    (v.is_number_float() && std::isfinite(v.get<double>()) &&
                     v.get<double>() == std::floor(v.get<double>()) && std::abs(v.get<double>()) < 1e15);
    if (!integral) fail("key '" + key + "' must be an integer, got " + v.dump());
    int64_t value = v.is_number_float() ? static_cast<int64_t>(v.get<double>()) : v.get<int64_t>();
    if (value < min_value || value > INT32_MAX)
      fail("key '" + key + "' must be in [" + std::to_string(min_value) + ", " + std::to_string(INT32_MAX) +
           "], got " + v.dump());
    return value;
  }

  const json& config_;
  std::string source_;
  std::string model_type_;
};

}  // namespace moe
