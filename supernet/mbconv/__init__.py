"""The MBConv classifier family: once-for-all MobileNet spaces and their elastic supernet,
training, evaluation and accuracy predictor."""
