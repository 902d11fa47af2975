// A development CA and one node certificate made in-process (OpenSSL), for tools that need mutual TLS
// without prepared files (moectl bench cluster --tls). Same shape as ops/tls/make-dev-certs.sh: EC P-256,
// the node certificate good for client and server use, subjectAltName NAME, localhost, 127.0.0.1.
// Not for production.
#pragma once

#include <filesystem>
#include <string>

#include "runtime/net/tls_context.h"

namespace moe {

// Writes DIR/ca.pem, DIR/ca.key, DIR/NAME.pem, DIR/NAME.key (DIR is created) and returns the node's
// files. Throws std::runtime_error naming the step that failed.
TlsFiles make_dev_certs(const std::filesystem::path& dir, const std::string& name = "node");

}  // namespace moe
