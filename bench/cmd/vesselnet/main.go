//go:build linux

// Binary vesselnet is the network workload of vesselbench's net measure. `vesselnet serve`
// runs inside a container (built static, bind-mounted in) and listens on four TCP ports: a
// sink that reads until end of stream and answers with the byte count, a source that writes
// until the peer closes, an echo server and an HTTP server answering a small body.
// `vesselnet client -host ADDR` runs on the host against it: TCP throughput host→container
// (to the sink) and container→host (from the source), the round-trip time of 64-byte
// messages (echo) and the rate of HTTP requests over keep-alive connections. The client
// prints one JSON object (report.NetRun) as its last line.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vessel-containers/vessel/bench/internal/report"
)

// The server's ports.
const (
	sinkPort   = 5201
	sourcePort = 5202
	echoPort   = 5203
	httpPort   = 5280
)

const (
	streamBlock = 128 << 10
	pingSize    = 64
	httpBody    = "vesselnet\n"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vesselnet serve | client -host ADDR [-for D] [-wait D] [-conns N]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want serve or client", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vesselnet:", err)
		os.Exit(1)
	}
}

// serve listens on every port first (a client that reached one finds all), then serves
// until SIGTERM or SIGINT.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", ":"+strconv.Itoa(port))
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, p := range []int{sinkPort, sourcePort, echoPort, httpPort} {
		l, err := listen(p)
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	handlers := []func(net.Conn){sink, source, echo}
	for i, h := range handlers {
		wg.Add(1)
		go func() { // owner: serve; ends when its listener is closed
			defer wg.Done()
			acceptLoop(ls[i], h)
		}()
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, httpBody)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	wg.Add(1)
	go func() { // owner: serve; ends when the server is closed
		defer wg.Done()
		_ = srv.Serve(ls[3])
	}()
	<-ctx.Done()
	srv.Close()
	for _, l := range ls[:3] {
		l.Close()
	}
	return nil
}

// acceptLoop serves each connection of l with h until l is closed.
func acceptLoop(l net.Listener, h func(net.Conn)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() { // owner: acceptLoop; ends with the connection
			defer wg.Done()
			defer c.Close()
			h(c)
		}()
	}
}

// sink reads until end of stream, then writes the byte count (8 bytes, big endian).
func sink(c net.Conn) {
	n, err := io.CopyBuffer(io.Discard, c, make([]byte, streamBlock))
	if err != nil {
		return
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	_, _ = c.Write(b[:])
}

// source writes until the peer closes.
func source(c net.Conn) {
	buf := make([]byte, streamBlock)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// echo writes back what it reads.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	host := fs.String("host", "", "the server's address")
	dur := fs.Duration("for", 2*time.Second, "duration of each test")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the server to listen")
	conns := fs.Int("conns", 4, "concurrent keep-alive connections of the HTTP test")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *host == "" || *dur <= 0 || *conns < 1 {
		return errors.New("want -host, -for above zero and -conns at least 1")
	}
	addr := func(port int) string { return net.JoinHostPort(*host, strconv.Itoa(port)) }
	if err := waitListening(addr(echoPort), *wait); err != nil {
		return err
	}
	r := report.NetRun{Seconds: dur.Seconds(), HTTPConns: *conns}
	var err error
	if r.ToContainerMbits, err = sendTo(addr(sinkPort), *dur); err != nil {
		return fmt.Errorf("host→container: %w", err)
	}
	if r.FromContainerMbits, err = receiveFrom(addr(sourcePort), *dur); err != nil {
		return fmt.Errorf("container→host: %w", err)
	}
	if r.RTTMedianUs, r.RTTP99Us, r.PingPongs, err = pingPong(addr(echoPort), *dur); err != nil {
		return fmt.Errorf("ping-pong: %w", err)
	}
	if r.HTTPPerSec, err = httpRate("http://"+addr(httpPort)+"/", *dur, *conns); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	out, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

// waitListening dials addr until it answers or wait has passed: the server's container
// (a VM booting) may not be listening yet.
func waitListening(addr string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server at %s not listening after %s: %w", addr, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mbits is n bytes over d in Mbit/s.
func mbits(n int64, d time.Duration) float64 {
	return float64(n) * 8 / 1e6 / d.Seconds()
}

// sendTo writes to the sink for dur, closes its side and waits for the sink's count: the
// rate is what the sink received over the time until it acknowledged it.
func sendTo(addr string, dur time.Duration) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, streamBlock)
	begin := time.Now()
	end := begin.Add(dur)
	// A peer that stops reading fails the test instead of blocking it.
	if err := c.SetWriteDeadline(end.Add(time.Minute)); err != nil {
		return 0, err
	}
	var sent int64
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			return 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		return 0, err
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("sink's count: %w", err)
	}
	took := time.Since(begin)
	if got := int64(binary.BigEndian.Uint64(b[:])); got != sent {
		return 0, fmt.Errorf("sink received %d bytes of %d", got, sent)
	}
	return mbits(sent, took), nil
}

// receiveFrom reads from the source for dur.
func receiveFrom(addr string, dur time.Duration) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, streamBlock)
	var got int64
	begin := time.Now()
	if err := c.SetReadDeadline(begin.Add(dur)); err != nil {
		return 0, err
	}
	for {
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return 0, err
		}
	}
	return mbits(got, time.Since(begin)), nil
}

// pingPong sends 64-byte messages to the echo server one at a time for dur and returns the
// median and 99th percentile round trip in microseconds and the count.
func pingPong(addr string, dur time.Duration) (median, p99 float64, n int, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	if err := c.(*net.TCPConn).SetNoDelay(true); err != nil {
		return 0, 0, 0, err
	}
	if err := c.SetDeadline(time.Now().Add(dur + time.Minute)); err != nil {
		return 0, 0, 0, err
	}
	msg, back := make([]byte, pingSize), make([]byte, pingSize)
	var rtts []float64
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, 0, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return 0, 0, 0, err
		}
		rtts = append(rtts, float64(time.Since(t).Nanoseconds())/1e3)
	}
	if len(rtts) == 0 {
		return 0, 0, 0, errors.New("no round trip finished")
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[(len(rtts)*99)/100], len(rtts), nil
}

// httpRate runs conns workers, each a keep-alive connection making GET requests one after
// another for dur, and returns the requests per second.
func httpRate(url string, dur time.Duration, conns int) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: time.Minute}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  []error
	)
	begin := time.Now()
	end := begin.Add(dur)
	for range conns {
		wg.Add(1)
		go func() { // owner: httpRate; ends at end or on the first error
			defer wg.Done()
			n, err := httpWorker(cl, url, end)
			mu.Lock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(total) / time.Since(begin).Seconds(), nil
}

func httpWorker(cl *http.Client, url string, end time.Time) (int, error) {
	n := 0
	for time.Now().Before(end) {
		resp, err := cl.Get(url)
		if err != nil {
			return n, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return n, err
		}
		if resp.StatusCode != http.StatusOK || string(body) != httpBody {
			return n, fmt.Errorf("GET %s: %s %q", url, resp.Status, body)
		}
		n++
	}
	return n, nil
}
