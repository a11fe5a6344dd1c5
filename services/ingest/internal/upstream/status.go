package upstream

import (
	"errors"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
)

// isStatus reports whether err is an RTSP response with the given status.
func isStatus(err error, code base.StatusCode) bool {
	var bs liberrors.ErrClientBadStatusCode
	return errors.As(err, &bs) && bs.Code == code
}

// IsNotFound reports whether err means the upstream does not have the stream.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
