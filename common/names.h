// Process names, labels and references (pm.v1.StartRequest.name and
// .labels; the `id` of every request, which may be a full id, a name or a
// unique prefix of an id).
//
//   PM_RETURN_IF_ERROR(pm::ValidateName(request.name()));     // at Start
//   PM_RETURN_IF_ERROR(pm::ValidateLabels(request.labels()));
//   if (!pm::IsFullId(ref)) { ...resolve it (Registry::Resolve)... }
//   PM_ASSIGN_OR_RETURN(LabelSelector s, pm::ParseLabelSelector("app=web"));
//   if (s.Matches(status.labels())) ...
//
// The caps (documented in the README):
//   name   1..64 characters of [A-Za-z0-9_.-], the first a letter or digit,
//          not shaped like a full id (a UUID);
//   labels at most 64; key 1..128 characters of [A-Za-z0-9_.-/], the first a
//          letter or digit; value at most 1024 bytes (UTF-8, no NUL);
//   ref    1..64 characters of [A-Za-z0-9_.-] (a name, an id or a prefix);
//   node   1..64 characters of [A-Za-z0-9_.-], the first a letter or digit
//          (a host of a cluster, as its --node names it: a host name fits).
#ifndef PM_COMMON_NAMES_H_
#define PM_COMMON_NAMES_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace pm {

inline constexpr size_t kMaxNameLength = 64;
inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyLength = 128;
inline constexpr size_t kMaxLabelValueLength = 1024;
inline constexpr size_t kMaxLabelSelectors = 64;
inline constexpr size_t kMaxNodeNameLength = 64;

// A full process id (a UUID in its canonical form, either case): used as
// it is, never resolved.
bool IsFullId(absl::string_view ref);

// INVALID_ARGUMENT naming what is wrong with a process name.
absl::Status ValidateName(absl::string_view name);

// INVALID_ARGUMENT naming what is wrong with a node name (StartRequest.node,
// ListRequest.node, a service's --node): "node \"a/b\" has '/': ...".
absl::Status ValidateNodeName(absl::string_view node);

// INVALID_ARGUMENT naming the first label that breaks a cap.
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels);

// INVALID_ARGUMENT when `ref` can be neither a full id, nor a name, nor an
// id's prefix.
absl::Status ValidateRef(absl::string_view ref);

// Whether `ref` could be the start of an id: hex digits and dashes only.
bool CouldBeIdPrefix(absl::string_view ref);

// One label selector: "key=value" (the label has that value) or "key" (the
// label is set).
struct LabelSelector {
  std::string key;
  std::optional<std::string> value;

  bool Matches(const google::protobuf::Map<std::string, std::string>& labels) const;
};

// INVALID_ARGUMENT naming the selector when its key breaks the key's rules.
absl::StatusOr<LabelSelector> ParseLabelSelector(absl::string_view text);

}  // namespace pm

#endif  // PM_COMMON_NAMES_H_
