// Package nats holds Ferry's NATS server configuration: single.conf
// (one node), single-tls.conf (one node with TLS) and cluster.conf (a node of
// the 3-node JetStream cluster of the compose stack). Its tests start embedded
// servers from those very files, trusting a fleet minted by libs/natscreds (the
// role permission templates live there), and check what each user may and may not do.
//
// The commands under cmd/ are the NATS server (cmd/nats-server) and the
// layout bootstrap run with ops credentials (cmd/ferry-bootstrap), both built
// into the FROM-scratch NATS image.
package nats
