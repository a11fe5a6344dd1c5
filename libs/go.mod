module github.com/ferrystream/ferry/libs

go 1.26.0

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

require (
	github.com/ferrystream/ferry/schemas v0.0.0
	github.com/nats-io/nats.go v1.55.0
)

replace github.com/ferrystream/ferry/schemas => ../schemas
