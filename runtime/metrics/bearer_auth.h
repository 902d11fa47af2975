// The bearer-token check of a guarded /metrics (issue 12): whether an HTTP request head carries
// `Authorization: Bearer <token>` (header name and scheme case-insensitive, the token compared in time
// independent of where it differs).
#pragma once

#include <string>

namespace moe {

// True when `token` is empty (an open endpoint) or the head's Authorization header is Bearer `token`.
bool bearer_authorized(const std::string& request_head, const std::string& token);

}  // namespace moe
