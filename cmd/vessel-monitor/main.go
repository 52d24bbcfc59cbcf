// Binary vessel-monitor serves Prometheus metrics of the Vessel sandboxes on this host at
// /metrics (internal/monitor): each sandbox's containers and what its VMM and shared file
// system daemon cost on the host.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vessel-containers/vessel/internal/monitor"
	"github.com/vessel-containers/vessel/internal/persist"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve /metrics on")
	root := flag.String("root", persist.DefaultRoot, "directory holding the sandboxes' state")
	flag.Parse()
	if err := run(*listen, *root); err != nil {
		fmt.Fprintln(os.Stderr, "vessel-monitor:", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM.
func run(listen, root string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.New(root), monitor.NewShims(root), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }() // owner: run, which waits for it below
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
