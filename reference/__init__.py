"""The PyTorch reference path: FunASR's own modules, loaded from the original files.
Importing the package loads nothing heavy: conversion reads .pt files through
`torch_load` with torch alone."""
