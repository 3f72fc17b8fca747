// Flags that only work together: a set given whole or not at all (the
// registry's and the launcher's --etcd_ca_file, --etcd_cert_file and
// --etcd_key_file), checked once at startup by every service that takes
// them, with one message.
//
//   PM_RETURN_IF_ERROR(pm::CheckAllOrNone(
//       {{"--etcd_ca_file", FLAGS_etcd_ca_file},
//        {"--etcd_cert_file", FLAGS_etcd_cert_file},
//        {"--etcd_key_file", FLAGS_etcd_key_file}},
//       "TLS to etcd"));
#ifndef PM_COMMON_FLAG_GROUPS_H_
#define PM_COMMON_FLAG_GROUPS_H_

#include <initializer_list>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pm {

// One flag of a group: its name as a user types it ("--etcd_ca_file") and
// its value (empty: not given).
struct FlagValue {
  absl::string_view flag;
  absl::string_view value;
};

// OK when every flag of `group` is given, or none is. Otherwise
// INVALID_ARGUMENT naming the missing ones and what the group is for:
// "--etcd_key_file is missing: TLS to etcd takes --etcd_ca_file,
// --etcd_cert_file and --etcd_key_file together (or none of them)".
absl::Status CheckAllOrNone(std::initializer_list<FlagValue> group,
                            absl::string_view purpose);

}  // namespace pm

#endif  // PM_COMMON_FLAG_GROUPS_H_
