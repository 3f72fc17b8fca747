// Command example runs one program through a pm gateway, as `pm run` does:
// it starts the program, copies its output (stdout to stdout, stderr to
// stderr) as it comes, and exits with the program's exit code.
//
//	example -target localhost:8080 -ca certs/dev/ca.pem \
//	    -cert certs/dev/client.pem -key certs/dev/client.key \
//	    -user demo -password_file certs/dev/demo.password \
//	    -- sh -c 'echo hello; exit 3'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"pm.example/client"
	"pm.example/client/pmv1"
)

func main() {
	var opts client.Options
	flag.StringVar(&opts.Target, "target", "localhost:8080", "the gateway's host:port")
	flag.StringVar(&opts.CAFile, "ca", "", "the CA the gateway's certificate chains to (PEM)")
	flag.StringVar(&opts.CertFile, "cert", "", "this client's certificate (PEM)")
	flag.StringVar(&opts.KeyFile, "key", "", "this client's key (PEM)")
	flag.StringVar(&opts.User, "user", "", "the gateway user")
	flag.StringVar(&opts.PasswordFile, "password_file", "", "a file whose first line is the password")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: example [flags] -- PROGRAM [ARGS...]")
		os.Exit(2)
	}
	code, err := run(context.Background(), opts, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // "pm: start /bin/nope: FailedPrecondition: ..."
		os.Exit(1)
	}
	os.Exit(code)
}

// run starts argv through the gateway, copies its output until it has ended
// and returns its exit code (128 + the signal when a signal ended it).
func run(ctx context.Context, opts client.Options, argv []string) (int, error) {
	c, err := client.Dial(opts)
	if err != nil {
		return 0, err
	}
	defer c.Close()

	started, err := c.Start(ctx, client.Command(argv[0], argv[1:]...))
	if err != nil {
		return 0, err
	}
	out := c.Output(ctx, started.Id, client.OutputOptions{FromStart: true, Follow: true})
	for out.Next() {
		chunk := out.Chunk()
		if chunk.Stream == pmv1.OutputChunk_STREAM_STDERR {
			os.Stderr.Write(chunk.Data)
		} else {
			os.Stdout.Write(chunk.Data)
		}
	}
	if err := out.Err(); err != nil {
		return 0, err
	}
	// A followed stream ends once the process has ended: Wait answers at once.
	final, err := c.Wait(ctx, started.Id)
	if err != nil {
		return 0, err
	}
	if final.State == pmv1.ProcessStatus_STATE_SIGNALED {
		return 128 + int(final.Signal), nil
	}
	return int(final.ExitCode), nil
}
