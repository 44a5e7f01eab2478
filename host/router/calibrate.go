package router

import "math"

// platt maps the fused evidence of a candidate to the probability that it
// is the right domain: sigma(a*z + b*m + c), where z is the candidate's
// fused score plus coverage (how much evidence there is) and m the log-odds
// of its softmax share among all classes, the background included (how
// much better it is than the rest). a and b are never negative: more
// evidence never lowers the confidence.
type platt struct {
	A, B, C float64
}

// defaultPlatt is used when there is too little data to hold any out. It
// was fitted once on held-out CLINC150 validation data and is only a
// prior: routers with enough examples fit their own.
var defaultPlatt = platt{A: 0.9, B: 0.35, C: -5.5}

func (p platt) prob(z, m float64) float64 {
	return sigmoid(p.A*z + p.B*m + p.C)
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// calPoint is one held-out observation: the features of the best candidate
// and whether it was right.
type calPoint struct {
	z, m float64
	ok   bool
	w    float64 // weight; 0 means 1
}

// fitPlatt fits a monotone calibration: when the unconstrained fit gives a
// feature a negative weight, that feature is dropped and the rest refitted.
func fitPlatt(pts []calPoint) (platt, bool) {
	use := [2]bool{true, true}
	for {
		p, ok := fitPlattUsing(pts, use)
		if !ok {
			return p, false
		}
		switch {
		case p.A < 0 && use[0] && (p.B >= 0 || p.A <= p.B):
			use[0] = false
		case p.B < 0 && use[1]:
			use[1] = false
		default:
			return p, use[0] || use[1]
		}
	}
}

// fitPlattUsing fits a, b and c by Newton's method on the log-loss with a small
// ridge, using Platt's smoothed targets so that separable data does not
// push the weights to infinity. It returns ok=false when the data cannot
// support a fit (no positives or no negatives).
func fitPlattUsing(pts []calPoint, use [2]bool) (platt, bool) {
	var pos, neg float64
	weight := func(p calPoint) float64 {
		if p.w == 0 {
			return 1
		}
		return p.w
	}
	for _, p := range pts {
		if p.ok {
			pos += weight(p)
		} else {
			neg += weight(p)
		}
	}
	if pos == 0 || neg == 0 {
		return platt{}, false
	}
	hi, lo := (pos+1)/(pos+2), 1/(neg+2)
	const ridge = 1e-3
	var mask [2]float64
	for i, u := range use {
		if u {
			mask[i] = 1
		}
	}
	loss := func(w [3]float64) float64 {
		var l float64
		for _, p := range pts {
			y := lo
			if p.ok {
				y = hi
			}
			v := w[0]*p.z*mask[0] + w[1]*p.m*mask[1] + w[2]
			// log(1+e^v) - y*v, computed stably.
			l += weight(p) * (math.Max(v, 0) + math.Log1p(math.Exp(-math.Abs(v))) - y*v)
		}
		return l + ridge/2*(w[0]*w[0]+w[1]*w[1]+w[2]*w[2])
	}
	var w [3]float64
	cur := loss(w)
	for iter := 0; iter < 100; iter++ {
		var g [3]float64
		var h [3][3]float64
		for _, p := range pts {
			x := [3]float64{p.z * mask[0], p.m * mask[1], 1}
			y := lo
			if p.ok {
				y = hi
			}
			q := sigmoid(w[0]*x[0] + w[1]*x[1] + w[2])
			pw := weight(p)
			d := pw * (q - y)
			s := pw * math.Max(q*(1-q), 1e-12)
			for i := 0; i < 3; i++ {
				g[i] += d * x[i]
				for j := 0; j < 3; j++ {
					h[i][j] += s * x[i] * x[j]
				}
			}
		}
		for i := 0; i < 3; i++ {
			g[i] += ridge * w[i]
			h[i][i] += ridge
		}
		step, ok := solve3(h, g)
		if !ok {
			break
		}
		// Backtrack until the loss does not grow.
		t := 1.0
		var next [3]float64
		for ; t > 1e-6; t /= 2 {
			for i := range w {
				next[i] = w[i] - t*step[i]
			}
			if l := loss(next); l <= cur {
				cur = l
				break
			}
		}
		if t <= 1e-6 {
			break
		}
		var moved float64
		for i := range w {
			moved = math.Max(moved, math.Abs(next[i]-w[i]))
		}
		w = next
		if moved < 1e-7 {
			break
		}
	}
	for _, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return platt{}, false
		}
	}
	return platt{A: w[0] * mask[0], B: w[1] * mask[1], C: w[2]}, true
}

// solve3 solves h x = g by Gaussian elimination with partial pivoting.
func solve3(h [3][3]float64, g [3]float64) ([3]float64, bool) {
	for col := 0; col < 3; col++ {
		piv := col
		for r := col + 1; r < 3; r++ {
			if math.Abs(h[r][col]) > math.Abs(h[piv][col]) {
				piv = r
			}
		}
		if math.Abs(h[piv][col]) < 1e-12 {
			return g, false
		}
		h[col], h[piv] = h[piv], h[col]
		g[col], g[piv] = g[piv], g[col]
		for r := col + 1; r < 3; r++ {
			f := h[r][col] / h[col][col]
			for c := col; c < 3; c++ {
				h[r][c] -= f * h[col][c]
			}
			g[r] -= f * g[col]
		}
	}
	var x [3]float64
	for r := 2; r >= 0; r-- {
		s := g[r]
		for c := r + 1; c < 3; c++ {
			s -= h[r][c] * x[c]
		}
		x[r] = s / h[r][r]
	}
	return x, true
}
