// Package env reads configuration from environment variables into typed
// fields, collecting errors that name the key (`INGEST_FPS: "x" is not an
// integer`). An unset or empty variable leaves the field's default.
package env

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Reader reads variables through getenv and collects parse errors.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New returns a Reader over getenv.
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Str sets *dst to the variable key when it is set.
func (r *Reader) Str(dst *string, key string) {
	if v := r.getenv(key); v != "" {
		*dst = v
	}
}

// Int sets *dst to the integer in key when it is set.
func (r *Reader) Int(dst *int, key string) {
	if v := r.getenv(key); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: %q is not an integer", key, v))
			return
		}
		*dst = n
	}
}

// Int64 sets *dst to the 64-bit integer in key when it is set.
func (r *Reader) Int64(dst *int64, key string) {
	if v := r.getenv(key); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: %q is not an integer", key, v))
			return
		}
		*dst = n
	}
}

// Dur sets *dst to the duration in key when it is set.
func (r *Reader) Dur(dst *time.Duration, key string) {
	if v := r.getenv(key); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: %q is not a duration (e.g. 10s)", key, v))
			return
		}
		*dst = d
	}
}

// Bool sets *dst to the boolean in key when it is set.
func (r *Reader) Bool(dst *bool, key string) {
	if v := r.getenv(key); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: %q is not a boolean", key, v))
			return
		}
		*dst = b
	}
}

// Err returns every parse error so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }
