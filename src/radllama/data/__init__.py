"""radllama.data"""
