// Bearer-token check of /metrics requests (see bearer_auth.h).
#include "runtime/metrics/bearer_auth.h"

#include <algorithm>
#include <cctype>
#include <optional>

namespace moe {

namespace {

bool equal_constant_time(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0 && !b.empty();
}

// The value of header `name` (case-insensitive) in a request head, without surrounding blanks.
std::optional<std::string> header_value(const std::string& head, const std::string& name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    const std::string line = head.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const size_t colon = line.find(':');
    if (colon == name.size() && std::equal(name.begin(), name.end(), line.begin(), [](char x, char y) {
          return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
        })) {
      std::string value = line.substr(colon + 1);
      const size_t first = value.find_first_not_of(" \t");
      const size_t last = value.find_last_not_of(" \t");
      return first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
    }
    pos = end;
  }
  return std::nullopt;
}

}  // namespace

bool bearer_authorized(const std::string& head, const std::string& token) {
  if (token.empty()) return true;
  const auto value = header_value(head, "Authorization");
  if (!value || value->size() < 7 || !std::equal(value->begin(), value->begin() + 7, "bearer ", [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) == y;
      }))
    return false;
  std::string given = value->substr(7);
  given.erase(0, std::min(given.find_first_not_of(' '), given.size()));
  return equal_constant_time(given, token);
}

}  // namespace moe
