"""radllama.models"""
