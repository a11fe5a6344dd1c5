package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferrystream/ferry/libs/natsembed"
)

// runNATSChild is the -nats-child mode: an embedded NATS server (one node,
// or a 3-node cluster in this one process) that prints its URLs as one JSON
// line and runs until SIGTERM. It runs as its own process so that its CPU
// and memory are measured apart from the simulated hosts and agents.
func runNATSChild(ctx context.Context, nodes int, dir string, stdout io.Writer) error {
	var servers []*server.Server
	var urls string
	switch nodes {
	case 1:
		s, err := natsembed.Run(natsembed.Config{Name: "n1", Port: -1, HTTPPort: -1, StoreDir: dir})
		if err != nil {
			return err
		}
		servers, urls = []*server.Server{s}, s.ClientURL()
	case 3:
		cl, err := natsembed.RunCluster(dir, 3, 16222)
		if err != nil {
			return err
		}
		servers, urls = cl.Servers, cl.URLs()
	default:
		return fmt.Errorf("-nats-nodes: 1 or 3, got %d", nodes)
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	var mons []string
	for _, s := range servers {
		mons = append(mons, "http://"+s.MonitorAddr().String())
	}
	line, _ := json.Marshal(map[string]any{"urls": urls, "monitors": mons})
	fmt.Fprintln(stdout, string(line))
	<-ctx.Done()
	return nil
}
