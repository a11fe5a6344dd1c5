// Package compose tests Ferry as docker-compose.yml runs it: a 3-node NATS
// JetStream cluster with least-privilege users, three ingest origins in two
// zones, an edge, two replicas of every service, a synthetic camera and a
// probe. The tests need Docker and the images (make images), so they sit
// behind the build tag "compose":
//
//	make test-compose                      # scripts/compose-test.sh
//	cd test && go test -tags compose -v ./compose/
//
// They bring the stack up, run the scenarios in order (cluster, access,
// maintenance, a NATS node stopped mid-migration, the active placement
// replica killed mid-evacuation, an origin killed, an origin partitioned from
// NATS), print each one's figures and always take the stack down
// (docker-compose down -v), unless FERRY_COMPOSE_KEEP=1.
// FERRY_COMPOSE_ONLY_NATS=1 runs only what needs no Ferry service: the
// cluster, the access rules and a NATS node stop under compare-and-set writes.
package compose
