"""radllama.train"""
