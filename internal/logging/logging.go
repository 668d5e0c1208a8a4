// Package logging builds the zerolog loggers of Ember's commands: console
// output on a terminal, JSON otherwise, at a chosen level. Components add
// their own "component" field; payloads and secrets are never logged.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

func init() {
	// Times to the millisecond: the steps of a start or a stop are read
	// from the log (RFC 3339 otherwise keeps whole seconds).
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
}

// New returns a logger writing to w. format is "auto" (console on a
// terminal, JSON otherwise), "json" or "console"; level is a zerolog level
// name (debug, info, warn, error).
func New(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log level %q: %w", level, err)
	}
	console := false
	switch format {
	case "json":
	case "console":
		console = true
	case "auto", "":
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	default:
		return zerolog.Logger{}, fmt.Errorf("log format %q: want auto, json or console", format)
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
