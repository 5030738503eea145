// Package tools only exists so that this wrapper module has a package.
package tools
