// The dev PKI and demo user of `make up`, made on its first run.
//
//   PM_ASSIGN_OR_RETURN(pm::stack::DevCredentials dev,
//                       pm::stack::EnsureDevCredentials("certs/dev", script));
//   options.gateway = dev.GatewayFlags("0.0.0.0:8080");
//
// certs/dev/ (git-ignored) gets what certs/make_pki.sh makes (ca.pem,
// server.pem/.key, client.pem/.key, an untrusted CA), a users file with the
// user `demo`, and demo's generated password in demo.password (mode 0600).
// Existing files are kept: a second `make up` reuses them.
#ifndef PM_STACK_DEV_CERTS_H_
#define PM_STACK_DEV_CERTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "stack/stack.h"

namespace pm::stack {

struct DevCredentials {
  std::string dir;
  std::string user = "demo";
  std::string password_file;  // <dir>/demo.password
  std::string users_file;     // <dir>/users
  bool created = false;       // made now (first run)

  std::string File(const std::string& name) const { return dir + "/" + name; }
  GatewayOptions GatewayFlags(const std::string& listen) const;
};

// Makes whatever is missing in `dir` (created 0700): the PKI by running
// `pki_script`, then the demo user. Errors name the step and the file.
absl::StatusOr<DevCredentials> EnsureDevCredentials(const std::string& dir,
                                                    const std::string& pki_script);

}  // namespace pm::stack

#endif  // PM_STACK_DEV_CERTS_H_
