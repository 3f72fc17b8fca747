// gRPC metadata keys pm's processes agree on.
#ifndef PM_COMMON_METADATA_H_
#define PM_COMMON_METADATA_H_

namespace pm {

// Who started a process, set by the gateway on its calls to the supervisor
// (the authenticated user and client certificate subject). The gateway
// strips it from remote callers; the local sockets are trusted by mode 0700.
inline constexpr char kOwnerMetadataKey[] = "pm-owner";
// The authenticated user alone (the gateway's user name), set beside
// pm-owner: what the gateway authorizes by (ProcessStatus.owner_user).
inline constexpr char kOwnerUserMetadataKey[] = "pm-owner-user";

}  // namespace pm

#endif  // PM_COMMON_METADATA_H_
