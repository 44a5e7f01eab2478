package models

import (
	"fmt"
	"strings"
)

// OutOfMemory wraps err with ErrOutOfMemory as well when its message says
// memory ran out (llama.cpp's and the C library's wording: "out of memory",
// "failed to allocate", "cannot allocate", ENOMEM), so that a LoadFunc's
// failure makes the registry evict unused models and retry once. Other
// errors come back as they are.
func OutOfMemory(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"out of memory", "failed to allocate", "cannot allocate", "enomem"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: %w", ErrOutOfMemory, err)
		}
	}
	return err
}

// FileEstimator returns an EstimateFunc that reads the GGUF header of
// Spec.Path and estimates with opts, overridden by the spec's ContextSize
// and Parallel when set.
func FileEstimator(opts EstimateOptions) EstimateFunc {
	return func(spec Spec) (int64, error) {
		o := opts
		if spec.ContextSize > 0 {
			o.ContextSize = spec.ContextSize
		}
		if spec.Parallel > 0 {
			o.Parallel = spec.Parallel
		}
		est, err := EstimateFile(spec.Path, o)
		if err != nil {
			return 0, err
		}
		return est.Total, nil
	}
}
