"""criticism"""
