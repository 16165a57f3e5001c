"""The Anycost GAN family: elastic StyleGAN2-style generators, their training and metrics."""
