package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What the client checks and builds before anything is sent; the calls
// themselves are proven against the real gateway (testing/gateway/go).

func TestDialRefusesMissingOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{CAFile: "ca.pem"}, "Options.Target is empty"},
		{Options{Target: "localhost:1"}, "Options.CAFile is empty"},
		{Options{Target: "localhost:1", CAFile: "ca.pem", CertFile: "c.pem"}, "go together"},
		{Options{Target: "localhost:1", CAFile: filepath.Join(dir, "absent.pem")}, "absent.pem"},
	} {
		_, err := Dial(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}

func TestDialRefusesACAFileWithoutACertificate(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(Options{Target: "localhost:1", CAFile: ca})
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate in") {
		t.Errorf("Dial = %v, want no PEM certificate", err)
	}
}

func TestReadPasswordFileTakesTheFirstLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte("s3cret:x\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPasswordFile(path)
	if err != nil || got != "s3cret:x" {
		t.Errorf("ReadPasswordFile = %q, %v; want s3cret:x", got, err)
	}
	if err := os.WriteFile(path, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPasswordFile(path); err == nil {
		t.Error("an empty first line was taken as a password")
	}
}

func TestBasicAuthIsTheStandardHeaderAndNeedsTLS(t *testing.T) {
	creds := BasicAuth("demo", "pa:ss")
	md, err := creds.GetRequestMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// base64("demo:pa:ss"): the user ends at the first colon.
	if got, want := md["authorization"], "Basic ZGVtbzpwYTpzcw=="; got != want {
		t.Errorf("authorization = %q, want %q", got, want)
	}
	if !creds.RequireTransportSecurity() {
		t.Error("the password would be sent without TLS")
	}
}

func TestErrorCarriesTheStatusThroughWrapping(t *testing.T) {
	err := wrap("stop", "1234", status.Error(codes.NotFound, "no process 1234"))
	if got, want := err.Error(), "pm: stop 1234: NotFound: no process 1234"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := status.Code(err); got != codes.NotFound {
		t.Errorf("status.Code = %v, want NotFound", got)
	}
	wrapped := fmt.Errorf("cleaning up: %w", err)
	if got := Code(wrapped); got != codes.NotFound {
		t.Errorf("Code(wrapped) = %v, want NotFound", got)
	}
	if Code(nil) != codes.OK || Code(fmt.Errorf("plain")) != codes.Unknown {
		t.Error("Code of nil or of an error without a status")
	}
	if wrap("list", "", nil) != nil {
		t.Error("wrap(nil) is not nil")
	}
}

func TestStopRefusesANegativeGracePeriodBeforeSending(t *testing.T) {
	// No connection: a call that reached the network would panic.
	_, err := (&Client{}).Stop(context.Background(), "1234", -time.Second)
	if Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "negative grace period") {
		t.Errorf("Stop(-1s) = %v, want InvalidArgument", err)
	}
}
