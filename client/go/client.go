// Package client is pm's Go client: it starts, stops, inspects and reads the
// output of processes through the gateway (mutual TLS and basic auth), with
// the messages of proto/pm/v1/process_manager.proto (package pmv1, generated
// by make_gopath.sh).
//
//	c, err := client.Dial(client.Options{
//		Target:       "localhost:8080",
//		CAFile:       "certs/dev/ca.pem",
//		CertFile:     "certs/dev/client.pem",
//		KeyFile:      "certs/dev/client.key",
//		User:         "demo",
//		PasswordFile: "certs/dev/demo.password",
//	})
//	if err != nil { ... }
//	defer c.Close()
//	started, err := c.Start(ctx, client.Command("sh", "-c", "echo hi; exit 3"))
//	out := c.Output(ctx, started.Id, client.OutputOptions{FromStart: true, Follow: true})
//	for out.Next() {
//		os.Stdout.Write(out.Chunk().Data)
//	}
//	if err := out.Err(); err != nil { ... }
//	final, err := c.Wait(ctx, started.Id) // final.ExitCode == 3
//
// Every method takes a context (its deadline bounds the call) and returns,
// on failure, an *Error naming the call and the id, which carries the
// gateway's gRPC status: Code(err) or status.FromError(err) read it. The
// codes are the gateway's (see the proto): NOT_FOUND for an unknown id,
// FAILED_PRECONDITION for a program that cannot be run, UNAUTHENTICATED
// without credentials, PERMISSION_DENIED for a wrong user or password,
// UNAVAILABLE when the gateway cannot be reached or refuses the TLS
// handshake (a client certificate it does not trust).
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"pm.example/client/pmv1"
)

// Options says where the gateway is and who the client is, as the C++
// Library's RemoteOptions and `pm --gateway` do.
type Options struct {
	// "host:port" of the gateway, e.g. "localhost:8080". Its certificate
	// must be valid for host.
	Target string
	// PEM files: the CA the gateway's certificate chains to, and this
	// client's certificate and key, issued by a CA the gateway trusts. With
	// no certificate (both empty) the gateway refuses the TLS handshake:
	// every call is UNAVAILABLE.
	CAFile   string
	CertFile string
	KeyFile  string
	// The gateway user and its password, or (when Password is empty) the
	// first line of PasswordFile. Sent with every call, never on its own:
	// the gateway checks each call. With no User, no credentials are sent
	// and every call is UNAUTHENTICATED.
	User         string
	Password     string
	PasswordFile string
}

// Client talks to one gateway over one connection; it is safe for
// concurrent use. Close it when done.
type Client struct {
	conn *grpc.ClientConn
	pm   pmv1.ProcessManagerClient
}

// Dial checks the options, reads the files they name and returns a Client
// for the gateway. It connects lazily: an unreachable gateway, or one that
// refuses the handshake, fails the first call (UNAVAILABLE), not Dial.
// Errors: a missing option, or a file that cannot be read or parsed,
// named. extra are passed on to grpc.Dial after pm's own options.
func Dial(opts Options, extra ...grpc.DialOption) (*Client, error) {
	tlsConfig, err := tlsConfig(opts)
	if err != nil {
		return nil, err
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig))}
	if opts.User != "" {
		password, err := password(opts)
		if err != nil {
			return nil, err
		}
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(BasicAuth(opts.User, password)))
	}
	conn, err := grpc.Dial(opts.Target, append(dialOpts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("pm: connecting to %q: %w", opts.Target, err)
	}
	return &Client{conn: conn, pm: pmv1.NewProcessManagerClient(conn)}, nil
}

func tlsConfig(opts Options) (*tls.Config, error) {
	if opts.Target == "" {
		return nil, errors.New("pm: Options.Target is empty: give the gateway's host:port")
	}
	if opts.CAFile == "" {
		return nil, errors.New("pm: Options.CAFile is empty: give the CA the gateway's certificate chains to")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("pm: Options.CertFile and Options.KeyFile go together")
	}
	caPEM, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("pm: reading the CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("pm: no PEM certificate in %q", opts.CAFile)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if opts.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("pm: loading the client certificate %q and key %q: %w",
				opts.CertFile, opts.KeyFile, err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

func password(opts Options) (string, error) {
	if opts.Password != "" {
		return opts.Password, nil
	}
	if opts.PasswordFile == "" {
		return "", fmt.Errorf("pm: no password for user %q: set Options.Password or Options.PasswordFile", opts.User)
	}
	return ReadPasswordFile(opts.PasswordFile)
}

// ReadPasswordFile returns the first line of path, as `pm
// --password_file` reads it. Errors: the file cannot be read, or its first
// line is empty.
func ReadPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pm: reading the password: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if line == "" {
		return "", fmt.Errorf("pm: the password file %q starts with an empty line", path)
	}
	return line, nil
}

// BasicAuth is per-call credentials carrying "authorization: Basic ..." for
// user and password, sent only over TLS. Dial sets it from Options; it is
// exported for callers that build their own gRPC connection.
func BasicAuth(user, password string) credentials.PerRPCCredentials {
	token := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return headerCredentials{"authorization": "Basic " + token}
}

type headerCredentials map[string]string

func (h headerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return h, nil
}

// RequireTransportSecurity keeps the password off cleartext connections.
func (headerCredentials) RequireTransportSecurity() bool { return true }

// Close ends the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Raw is the generated client on the same connection and credentials, for
// what this package does not wrap (Signal, Remove, Watch, and every field
// of the requests). Its errors are gRPC's own, not *Error.
func (c *Client) Raw() pmv1.ProcessManagerClient { return c.pm }

// Command is a StartRequest for executable (a path, or a name looked up on
// PATH) with args after argv[0]; set its other fields (Env, WorkingDir,
// Limits, Name, ...) before Start.
func Command(executable string, args ...string) *pmv1.StartRequest {
	return &pmv1.StartRequest{Executable: executable, Args: args}
}

// Start starts a process and returns once its program runs (exec done), with
// its id (resp.Id). Errors: INVALID_ARGUMENT (a bad request),
// FAILED_PRECONDITION (the program cannot be run: the message names the
// path and the OS error), RESOURCE_EXHAUSTED (a cap), UNAVAILABLE.
func (c *Client) Start(ctx context.Context, req *pmv1.StartRequest) (*pmv1.StartResponse, error) {
	resp, err := c.pm.Start(ctx, req)
	return resp, wrap("start", req.GetExecutable(), err)
}

// Stop stops a process and its whole tree: SIGTERM to its process group, then
// SIGKILL to its tree after grace (0: the gateway's default, 10 s; at most
// an hour). id is a full id, a name or a unique prefix of an id. Errors:
// NOT_FOUND, INVALID_ARGUMENT (a negative or too long grace period).
func (c *Client) Stop(ctx context.Context, id string, grace time.Duration) (*pmv1.StopResponse, error) {
	if grace < 0 {
		return nil, wrap("stop", id, status.Errorf(codes.InvalidArgument, "negative grace period %v", grace))
	}
	ms := (grace + time.Millisecond - 1) / time.Millisecond // round up: never shorter than asked
	if ms > math.MaxUint32 {
		ms = math.MaxUint32 // still over the maximum: the gateway refuses it
	}
	resp, err := c.pm.Stop(ctx, &pmv1.StopRequest{Id: id, GracePeriodMs: uint32(ms)})
	return resp, wrap("stop", id, err)
}

// Kill stops a process's whole tree at once with SIGKILL (no grace period),
// also cutting short a Stop in its grace period. Errors as Stop's.
func (c *Client) Kill(ctx context.Context, id string) (*pmv1.StopResponse, error) {
	resp, err := c.pm.Stop(ctx, &pmv1.StopRequest{Id: id, Force: true})
	return resp, wrap("kill", id, err)
}

// Status is the process's record, with /proc's view while it runs. Errors:
// NOT_FOUND.
func (c *Client) Status(ctx context.Context, id string) (*pmv1.ProcessStatus, error) {
	resp, err := c.pm.GetStatus(ctx, &pmv1.GetStatusRequest{Id: id})
	return resp, wrap("status", id, err)
}

// Wait returns the process's final status once it has ended (at once if it
// has). Bounded by ctx: DEADLINE_EXCEEDED when its deadline passes first.
func (c *Client) Wait(ctx context.Context, id string) (*pmv1.ProcessStatus, error) {
	resp, err := c.pm.Wait(ctx, &pmv1.WaitRequest{Id: id})
	return resp, wrap("wait", id, err)
}

// List returns the processes on record that the caller may see (a user who
// is not an admin: its own), newest first; filter (nil: none) narrows them
// by state, name, labels or count.
func (c *Client) List(ctx context.Context, filter *pmv1.ListRequest) ([]*pmv1.ProcessStatus, error) {
	if filter == nil {
		filter = &pmv1.ListRequest{}
	}
	resp, err := c.pm.List(ctx, filter)
	if err != nil {
		return nil, wrap("list", "", err)
	}
	return resp.GetProcesses(), nil
}
