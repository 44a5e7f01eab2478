// Package handle adds the optional handle export to a plugin built with
// github.com/mdsa-go/mdsa/sdk/go. Import it for its side effect:
//
//	import _ "github.com/mdsa-go/mdsa/sdk/go/handle"
//
// The host calls handle instead of prompt, generate and validate whenever a
// plugin exports it, so only plugins that drive their own host calls should
// import this package. The export runs the registered Plugin's Handle
// function, or Env.DefaultHandle when Handle is nil. In native builds the
// package is empty.
package handle
