package gliner_test

// The tests run against a live gliner2-serve on the tiny random checkpoint, started here: the venv
// is GLINER_VENV (default ../../.venv, the repository's), the server listens on a free loopback port
// with the conformance vectors' API key, and gets SIGTERM at the end. GLINER_TEST_SERVER=host:port
// uses a server that is already running instead (same checkpoint and key).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const servingPrefix = "gliner2-serve: SERVING "

var (
	serverAddr string          // host:port of the live server
	vectors    *vectorsFile    // clients/conformance/vectors.json
	serverLog  = &syncBuffer{} // the server's output, printed when the start fails
)

type vectorsFile struct {
	APIKey         string   `json:"api_key"`
	Volatile       []string `json:"volatile"`
	ScoreTolerance float64  `json:"score_tolerance"`
	Vectors        []vector `json:"vectors"`
}

type vector struct {
	Name     string          `json:"name"`
	Method   string          `json:"method"`
	Request  json.RawMessage `json:"request"`
	APIKey   *string         `json:"api_key"`
	Response json.RawMessage `json:"response"`
	Error    *struct {
		Code   string  `json:"code"`
		Reason *string `json:"reason"`
		Field  *string `json:"field"`
	} `json:"error"`
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	raw, err := os.ReadFile(filepath.Join("..", "conformance", "vectors.json"))
	if err == nil {
		vectors = &vectorsFile{}
		err = json.Unmarshal(raw, vectors)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the conformance vectors:", err)
		return 1
	}
	if addr := os.Getenv("GLINER_TEST_SERVER"); addr != "" {
		serverAddr = addr
		return m.Run()
	}
	stop, err := startServer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting gliner2-serve: %v\n--- its output ---\n%s\n", err, tail(serverLog.String(), 4000))
		return 1
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping gliner2-serve:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func venv() (string, error) {
	dir := os.Getenv("GLINER_VENV")
	if dir == "" {
		dir = filepath.Join("..", "..", ".venv")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "gliner2-serve")); err != nil {
		return "", fmt.Errorf("no gliner2-serve in the venv %s (set GLINER_VENV, or run scripts/install.sh): %w", dir, err)
	}
	return dir, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer builds the tiny checkpoint and starts gliner2-serve on it; stop sends SIGTERM and waits.
func startServer() (stop func() error, err error) {
	env, err := venv()
	if err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp("", "gliner-go-test-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(scratch) }
	checkpoint := filepath.Join(scratch, "tiny-span")
	build := exec.Command(filepath.Join(env, "bin", "python"), "-m", "gliner_server.random_checkpoint", checkpoint, "--seed", "1")
	if out, err := build.CombinedOutput(); err != nil {
		serverLog.Write(out)
		cleanup()
		return nil, fmt.Errorf("building the checkpoint: %w", err)
	}
	port, err := freePort()
	if err != nil {
		cleanup()
		return nil, err
	}
	run := filepath.Join(scratch, "run")
	cmd := exec.Command(filepath.Join(env, "bin", "gliner2-serve"), "--model", checkpoint, "--no-envoy",
		"--grpc-host", "127.0.0.1", "--grpc-port", strconv.Itoa(port), "--api-key", vectors.APIKey,
		"--cache-dir", filepath.Join(scratch, "cache"), "--run-dir", run, "--data-dir", filepath.Join(run, "data"),
		"--drain-seconds", "0")
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	// If this test process dies without stopping it, the kernel sends the server SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	reader, writer := io.Pipe()
	cmd.Stdout, cmd.Stderr = writer, writer
	if err := cmd.Start(); err != nil {
		cleanup()
		return nil, err
	}
	serving := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(reader)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		announced := false
		for scanner.Scan() {
			line := scanner.Text()
			serverLog.Write([]byte(line + "\n"))
			if !announced && strings.HasPrefix(line, servingPrefix) {
				announced = true
				close(serving)
			}
		}
		io.Copy(io.Discard, reader)
	}()
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		writer.Close()
		exited <- err
	}()
	stop = func() error {
		defer cleanup()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case err := <-exited:
			if err != nil { // it exits 0 after a graceful stop
				return fmt.Errorf("gliner2-serve exited with %v", err)
			}
			return nil
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("gliner2-serve did not stop within 30 s of SIGTERM; killed")
		}
	}
	select {
	case <-serving:
		serverAddr = fmt.Sprintf("127.0.0.1:%d", port)
		return stop, nil
	case err := <-exited:
		cleanup()
		return nil, fmt.Errorf("gliner2-serve exited before serving: %v", err)
	case <-time.After(180 * time.Second):
		cmd.Process.Kill()
		<-exited
		cleanup()
		return nil, fmt.Errorf("no %q line within 180 s", servingPrefix)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
