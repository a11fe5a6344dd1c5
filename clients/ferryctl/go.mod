module github.com/ferrystream/ferry/clients/ferryctl

go 1.26.0

require (
	github.com/ferrystream/ferry/libs v0.0.0
	github.com/ferrystream/ferry/schemas v0.0.0
)

replace (
	github.com/ferrystream/ferry/libs => ../../libs
	github.com/ferrystream/ferry/schemas => ../../schemas
)
