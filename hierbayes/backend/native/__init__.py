"""backend/native"""
