package telemetry_test

import (
	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/telemetry"
)

// *host.Host is the Source that `mdsa serve` passes to NewMetrics.
var _ telemetry.Source = (*host.Host)(nil)
