package instrument

import "unicode/utf8"

// names appends the rewritten "name" custom section s to out: the module name
// (subsection 0) is kept, function names (1) and local names (2) get shifted
// function indices, and the added imports are named ImportDebugName and
// StackImportDebugName. Other
// subsections are dropped. The name section is only debug information, so a
// malformed one (including names that are not UTF-8, which wazero rejects)
// is dropped rather than failing the whole module.
func (m *module) names(s section, out []byte) []byte {
	save := len(out)
	out, ok := m.appendNames(s, out)
	if !ok {
		return out[:save]
	}
	return out
}

func (m *module) appendNames(s section, out []byte) ([]byte, bool) {
	out, mark := open(append(out, secCustom))
	out = appendU32(out, 4)
	out = append(out, "name"...)
	r := &reader{b: m.b, pos: s.start, end: s.end}
	for r.pos < r.end {
		idAt := r.pos
		id, _ := r.byte("name subsection id")
		size, err := r.u32("name subsection size")
		if err != nil || int64(size) > int64(r.remaining()) {
			return out, false
		}
		sub := &reader{b: m.b, pos: r.pos, end: r.pos + int(size)}
		r.pos = sub.end
		switch id {
		case 0: // module name: exactly one name
			name, err := sub.name("module name")
			if err != nil || sub.pos != sub.end || !utf8.Valid(name) {
				return out, false
			}
			out = append(out, m.b[idAt:sub.end]...)
		case 1: // function names
			var mark int
			out, mark = open(append(out, 1))
			var ok bool
			if out, ok = m.functionNames(sub, out); !ok {
				return out, false
			}
			if out, err = finish(out, mark, idAt, "function names"); err != nil {
				return out, false
			}
		case 2: // local names
			var mark int
			out, mark = open(append(out, 2))
			var ok bool
			if out, ok = m.localNames(sub, out); !ok {
				return out, false
			}
			if out, err = finish(out, mark, idAt, "local names"); err != nil {
				return out, false
			}
		}
	}
	out, err := finish(out, mark, s.at, "name section")
	return out, err == nil
}

// shift maps an input function index to its output index.
func (m *module) shift(v uint32) (uint32, bool) {
	if m.nAdd > 0 && v >= m.shiftFrom {
		if v > ^uint32(0)-m.nAdd {
			return 0, false
		}
		return v + m.nAdd, true
	}
	return v, true
}

func (m *module) functionNames(r *reader, out []byte) ([]byte, bool) {
	n, err := r.count("function name count", 2)
	if err != nil {
		return out, false
	}
	// The added imports' names, in index order, go before the first
	// function the imports pushed up.
	var pending []uint32
	if m.addYield {
		pending = append(pending, m.yieldIdx)
	}
	if m.addStack {
		pending = append(pending, m.stackIdx)
	}
	flush := func(out []byte) []byte {
		for _, idx := range pending {
			name := ImportDebugName
			if m.addStack && idx == m.stackIdx {
				name = StackImportDebugName
			}
			out = appendName(out, idx, name)
		}
		pending = nil
		return out
	}
	total := n + uint32(len(pending))
	if m.wrapStart {
		total++
	}
	out = appendU32(out, total)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32("function index")
		if err != nil {
			return out, false
		}
		nameAt := r.pos
		if name, err := r.name("function name"); err != nil || !utf8.Valid(name) {
			return out, false
		}
		if len(pending) > 0 && idx >= m.shiftFrom {
			out = flush(out)
		}
		idx, ok := m.shift(idx)
		if !ok {
			return out, false
		}
		out = appendU32(out, idx)
		out = append(out, m.b[nameAt:r.pos]...)
	}
	out = flush(out)
	if m.wrapStart { // the added function has the highest index
		out = appendName(out, m.startFunc, StartDebugName)
	}
	return out, r.pos == r.end
}

func appendName(out []byte, idx uint32, name string) []byte {
	out = appendU32(out, idx)
	out = appendU32(out, uint32(len(name)))
	return append(out, name...)
}

func (m *module) localNames(r *reader, out []byte) ([]byte, bool) {
	n, err := r.count("local name count", 2)
	if err != nil {
		return out, false
	}
	out = appendU32(out, n)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32("function index")
		if err != nil {
			return out, false
		}
		idx, ok := m.shift(idx)
		if !ok {
			return out, false
		}
		out = appendU32(out, idx)
		mapAt := r.pos
		k, err := r.count("local count", 2)
		if err != nil {
			return out, false
		}
		for j := uint32(0); j < k; j++ {
			if _, err := r.u32("local index"); err != nil {
				return out, false
			}
			if name, err := r.name("local name"); err != nil || !utf8.Valid(name) {
				return out, false
			}
		}
		out = append(out, m.b[mapAt:r.pos]...)
	}
	return out, r.pos == r.end
}
