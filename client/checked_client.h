// CheckedClient: a pm::Client that refuses, before sending, a request a
// service could not parse (internal to client/; both ConnectLocal and
// ConnectRemote return one around their client).
//
//   std::unique_ptr<Client> client = WithRequestChecks(
//       std::make_unique<LocalClient>(dir));
//   client->GetStatus("caf\xe9");  // INVALID_ARGUMENT, nothing sent:
//                                   // "id is not valid UTF-8 (byte 0xe9 at 3)"
//
// protobuf serializes a proto3 string field that is not UTF-8 with only a
// log line, and the service's parser then refuses the whole message (a bare
// UNIMPLEMENTED). Here such a request gets INVALID_ARGUMENT naming the field
// and where its bytes form is (`args[1] ...; send it in args_bytes`),
// checked on the message in memory (serializing it would log).
#ifndef PM_CLIENT_CHECKED_CLIENT_H_
#define PM_CLIENT_CHECKED_CLIENT_H_

#include <memory>

#include "client/client.h"

namespace pm {

std::unique_ptr<Client> WithRequestChecks(std::unique_ptr<Client> client);

}  // namespace pm

#endif  // PM_CLIENT_CHECKED_CLIENT_H_
